//! A remote replica that records what the target would have persisted.
//!
//! rpmem replicates straight from the primary's memory: a flush on the primary becomes an RMA
//! write of the flushed (whole) lines as they are at that moment, and a drain becomes PERSIST
//! messages answered once rpmemd made the bytes durable. [`RecordedRemote`] plays that target
//! inside the test: it reads the primary's memory like the RMA write does, stores the bytes in a
//! [`Recorder`] and flushes them there, and fences the recorder at every drain. The recorder then
//! holds, at every fence, exactly the crash images the remote pool may be left with: what was
//! acknowledged is durable, what was written but not yet acknowledged may or may not be there
//! (per 8-byte word), and what the primary stored but never flushed never arrived at all.
//!
//! It plugs into the real fan-out of `pool::Pool` through [`pool::OpenOptions::remote`], so
//! the code under test is the pool's fan-out, not a copy of it.

use pool::crash::Recorder;
use pool::persist::PersistError;
use pool::{Persister, PrimaryMemory, RemoteSpec, Replica};
use std::sync::{Arc, Mutex};

/// The recording remote replica (see the module documentation).
pub struct RecordedRemote {
    rec: Arc<Recorder>,
    primary: PrimaryMemory,
    name: String,
}

impl Replica for RecordedRemote {
    fn describe(&self) -> String {
        format!("recorded remote {}", self.name)
    }
    fn len(&self) -> usize {
        self.rec.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), PersistError> {
        if off
            .checked_add(buf.len())
            .is_none_or(|e| e > self.rec.len())
        {
            return Err(PersistError::Replica {
                replica: 0,
                message: format!("read {off}+{} outside the recorded remote", buf.len()),
            });
        }
        // What a read of the remote pool returns: the target's memory (live bytes).
        self.rec.read(off, buf);
        Ok(())
    }
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        self.rec.write(off, data);
        self.rec.flush(off, data.len())
    }
    fn drain(&self) -> Result<(), PersistError> {
        self.rec.drain()
    }
    fn reads_primary(&self) -> bool {
        true
    }
    fn flush_from_primary(&self, off: usize, len: usize) -> Result<(), PersistError> {
        if off.checked_add(len).is_none_or(|e| e > self.primary.len()) {
            return Err(PersistError::Replica {
                replica: 0,
                message: format!("flush {off}+{len} outside the primary"),
            });
        }
        let mut buf = vec![0u8; len];
        // SAFETY: `PrimaryMemory` guarantees `[as_ptr(), as_ptr()+len())` stays mapped and
        // readable while this replica exists, and the range was checked against it above. The
        // bytes are copied raw (never through a reference); the workload is single-threaded,
        // so no store races with this copy, exactly as the RMA write of a flush reads them.
        unsafe {
            std::ptr::copy_nonoverlapping(self.primary.as_ptr().add(off), buf.as_mut_ptr(), len)
        };
        self.rec.write(off, &buf);
        self.rec.flush(off, len)
    }
}

/// Connects [`RecordedRemote`]s for every remote replica of a pool set and keeps their
/// recorders (by replica index) for the test to inspect.
#[derive(Default)]
pub struct RecordedRemotes {
    recs: Mutex<Vec<(usize, Arc<Recorder>)>>,
}

impl RecordedRemotes {
    /// A connector for [`pool::OpenOptions::remote`]. Each connect (create, open, resync)
    /// starts a fresh recorder holding zeroes; the previous one for the same replica is
    /// replaced.
    pub fn connector(
        &self,
    ) -> impl Fn(&poolset::RemoteReplica, &RemoteSpec) -> Result<Box<dyn Replica>, String> + '_
    {
        move |rr, spec| {
            let primary = spec
                .primary
                .ok_or_else(|| "the pool handed no primary memory to the connector".to_string())?;
            let rec = Arc::new(Recorder::new(spec.pool_size as usize));
            rec.set_capture(false);
            let mut recs = self.recs.lock().unwrap_or_else(|e| e.into_inner());
            recs.retain(|(i, _)| *i != spec.replica);
            recs.push((spec.replica, rec.clone()));
            Ok(Box::new(RecordedRemote {
                rec,
                primary,
                name: format!("{}:{}", rr.host, rr.descriptor.display()),
            }) as Box<dyn Replica>)
        }
    }

    /// The recorder of replica `replica`, if it was connected.
    pub fn get(&self, replica: usize) -> Option<Arc<Recorder>> {
        self.recs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(i, _)| *i == replica)
            .map(|(_, r)| r.clone())
    }
}
