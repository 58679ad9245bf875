//! Crash-consistency testing: a recording [`Persister`] and the crash images x86 allows.
//!
//! [`Recorder`] is an in-memory region with two images: **live** (what loads see) and
//! **durable** (what is guaranteed to survive a power failure). It logs every store, flush and
//! fence ([`Event`]). At every fence it captures a [`CrashPoint`]: the durable image plus, for
//! every 8-byte word with stores that are not yet guaranteed, the values the word may hold after a
//! crash.
//!
//! # Model
//! - The unit of atomicity is the aligned 8-byte word: x86 never tears an aligned 8-byte store.
//! - A store to a word that has not been flushed *and* fenced may or may not have reached the
//!   media: after a crash the word holds its last guaranteed value or any value it was given
//!   since (a cache line can be evicted at any moment, so intermediate values can persist too).
//! - `flush` covers whole 64-byte lines: every word in a line that overlaps the range is flushed.
//!   The next fence makes the value each word had *at the flush* guaranteed; stores after the
//!   flush stay uncertain.
//! - `write_flush` / `write_u64_flush` (streaming stores on hardware) flush only the words they
//!   write, not the rest of their lines.
//! - Words choose independently. This is a superset of what x86 allows (real hardware also keeps
//!   the order of stores within one cache line), so code proven here is safe on x86; it may
//!   reject code that relies on intra-line ordering, which PMDK-style code does not do.
//!
//! Crash images only grow between fences, so the images captured just before each fence plus the
//! images at the end ([`Recorder::crash_point_now`]) cover a crash at any instant.
//!
//! # Cost
//! A crash point does not copy the durable image. The recorder keeps one *base* image (the
//! durable image when the first point after [`Recorder::clear_history`] was captured) and a
//! *journal* of the words each fence made durable; a point is the journal length at its fence
//! plus its uncertain words. Images are built only when asked for:
//! [`Recorder::check_crash_images`] walks the points in order over one running image, applying
//! the journal between points and each image's choices in place (and undoing them after the
//! check), so checking an image costs its uncertain words, not the region's size. Capturing a
//! point costs its uncertain words; a long recording costs 16 bytes per word made durable.
//!
//! # Enumeration
//! [`CrashPoint::images`] yields every combination when there are at most
//! [`Enumerate::exhaustive_max`] of them; otherwise the "nothing survived" and "everything
//! survived" images followed by [`Enumerate::samples`] random ones from a seed that is printed
//! (replay with `POOL_CRASH_SEED=<seed>`).

use crate::persist::{PersistError, CACHE_LINE};
use crate::region::{check_bounds, Persister};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One logged operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Plain stores to `[off, off+len)`.
    Store {
        /// Offset.
        off: usize,
        /// Length.
        len: usize,
    },
    /// Flush of the lines covering `[off, off+len)` (of only its words, for a `write_flush`).
    Flush {
        /// Offset.
        off: usize,
        /// Length.
        len: usize,
    },
    /// A fence (drain); `index` counts fences from 0.
    Fence {
        /// Fence number.
        index: usize,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    /// Values stored since the guaranteed value, oldest first.
    history: Vec<u64>,
    /// Index into `history` of the value the word had at its last flush.
    flushed: Option<usize>,
}

/// A captured crash point before the journal is shared: where it sits in the journal and its
/// uncertain words.
#[derive(Clone, Debug)]
struct PointRec {
    fence: usize,
    upto: usize,
    choices: Vec<(usize, Vec<u64>)>,
}

struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// The durable image when the first point since the last `clear_history` was captured;
    /// `None` while there are no points (then nothing is journaled).
    base: Option<Arc<Vec<u8>>>,
    /// (word index, value) made durable by each fence since `base`, in fence order.
    journal: Vec<(usize, u64)>,
    pending: BTreeMap<usize, Pending>,
    log: Vec<Event>,
    points: Vec<PointRec>,
    fences: usize,
    capture: bool,
}

/// A recording, in-memory [`Persister`].
pub struct Recorder {
    len: usize,
    st: Mutex<State>,
}

fn word(img: &[u8], w: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&img[w * 8..w * 8 + 8]);
    u64::from_le_bytes(b)
}

fn set_word(img: &mut [u8], w: usize, v: u64) {
    img[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
}

impl Recorder {
    /// A zero-filled region of `len` bytes, already durable.
    pub fn new(len: usize) -> Recorder {
        Recorder::from_image(&vec![0u8; len])
    }

    /// A region whose live and durable contents are `image`.
    pub fn from_image(image: &[u8]) -> Recorder {
        // Internally padded to whole cache lines so that words and lines are always complete.
        let padded = image.len().div_ceil(CACHE_LINE) * CACHE_LINE;
        let mut live = Vec::with_capacity(padded);
        live.extend_from_slice(image);
        live.resize(padded, 0);
        Recorder {
            len: image.len(),
            st: Mutex::new(State {
                durable: live.clone(),
                live,
                base: None,
                journal: Vec::new(),
                pending: BTreeMap::new(),
                log: Vec::new(),
                points: Vec::new(),
                fences: 0,
                capture: true,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for inspection.
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop (or resume) capturing a crash point at every fence (e.g. during set-up).
    pub fn set_capture(&self, on: bool) {
        self.lock().capture = on;
    }

    /// Forget captured crash points and the log (the images stay).
    pub fn clear_history(&self) {
        let mut st = self.lock();
        st.points.clear();
        st.log.clear();
        st.base = None;
        st.journal.clear();
    }

    /// What loads see now.
    pub fn live_image(&self) -> Vec<u8> {
        self.lock().live[..self.len].to_vec()
    }

    /// What is guaranteed to survive a crash now.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable[..self.len].to_vec()
    }

    /// Every store, flush and fence so far.
    pub fn log(&self) -> Vec<Event> {
        self.lock().log.clone()
    }

    /// Number of fences so far.
    pub fn fences(&self) -> usize {
        self.lock().fences
    }

    /// Number of crash points captured since the last [`clear_history`](Self::clear_history).
    pub fn crash_point_count(&self) -> usize {
        self.lock().points.len()
    }

    /// The crash points captured just before each fence (while capture was on).
    pub fn crash_points(&self) -> Vec<CrashPoint> {
        let st = self.lock();
        let Some(base) = st.base.clone() else {
            return Vec::new();
        };
        let journal: Arc<[(usize, u64)]> = st.journal.as_slice().into();
        st.points
            .iter()
            .map(|p| CrashPoint::from_rec(p.clone(), self.len, base.clone(), journal.clone()))
            .collect()
    }

    /// The crash point for a crash right now.
    pub fn crash_point_now(&self) -> CrashPoint {
        let st = self.lock();
        let rec = PointRec {
            fence: st.fences,
            upto: 0,
            choices: uncertain(&st),
        };
        CrashPoint::from_rec(rec, self.len, Arc::new(st.durable.clone()), Arc::from([]))
    }

    /// Run `check` on every crash image of every captured crash point and of "now".
    /// Returns the number of images checked, or the first failure with where it happened.
    ///
    /// The images are built one at a time in a single buffer (see "Cost" in the module
    /// documentation); `check` must not keep the slice.
    pub fn check_crash_images(
        &self,
        opts: &Enumerate,
        mut check: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<usize, CrashFailure> {
        self.check_crash_images_at(opts, |_, img| check(img))
    }

    /// [`check_crash_images`](Self::check_crash_images), telling the checker where each image
    /// comes from: [`CrashMoment::BeforeFence`] for the captured points, [`CrashMoment::Now`]
    /// for a crash after the last operation returned (where everything acknowledged must be
    /// there).
    pub fn check_crash_images_at(
        &self,
        opts: &Enumerate,
        mut check: impl FnMut(CrashMoment, &[u8]) -> Result<(), String>,
    ) -> Result<usize, CrashFailure> {
        // Take what is needed under the lock, then check without it (the checker may use
        // other recorders, or even this one).
        let (mut img, journal, recs) = {
            let st = self.lock();
            let now = PointRec {
                fence: st.fences,
                upto: st.journal.len(),
                choices: uncertain(&st),
            };
            let img = match &st.base {
                Some(b) => b.to_vec(),
                None => st.durable.clone(),
            };
            let journal = if st.base.is_some() {
                st.journal.clone()
            } else {
                Vec::new()
            };
            let mut recs = if st.base.is_some() {
                st.points.clone()
            } else {
                Vec::new()
            };
            recs.push(if st.base.is_some() {
                now
            } else {
                PointRec { upto: 0, ..now }
            });
            (img, journal, recs)
        };
        // Resolve the seed once so that a failure names the seed that produced it.
        let seed = opts.resolve_seed();
        // A caller that chose the seed replays with it; otherwise say which one was used.
        if opts.seed.is_none()
            && recs
                .iter()
                .any(|r| choice_count(&r.choices) > opts.exhaustive_max)
        {
            eprintln!(
                "crash images: sampling {} images of points with many uncertain words, seed {seed} \
                 (replay with POOL_CRASH_SEED={seed})",
                opts.samples
            );
        }
        let mut applied = 0;
        let mut n = 0;
        let last = recs.len() - 1;
        for (i, rec) in recs.iter().enumerate() {
            let moment = if i == last {
                CrashMoment::Now
            } else {
                CrashMoment::BeforeFence(rec.fence)
            };
            for &(w, v) in &journal[applied..rec.upto] {
                set_word(&mut img, w, v);
            }
            applied = rec.upto;
            let exhaustive = choice_count(&rec.choices) <= opts.exhaustive_max;
            // The durable value of every uncertain word, to undo the choices after each image.
            let durable: Vec<u64> = rec.choices.iter().map(|(w, _)| word(&img, *w)).collect();
            let mut picks = Picks::new(&rec.choices, exhaustive, opts.samples, seed);
            let mut k = 0;
            while let Some(pick) = picks.next_pick() {
                for (c, (w, alts)) in pick.iter().zip(&rec.choices) {
                    if *c > 0 {
                        set_word(&mut img, *w, alts[c - 1]);
                    }
                }
                n += 1;
                let res = check(moment, &img[..self.len]);
                for (c, ((w, _), d)) in pick.iter().zip(rec.choices.iter().zip(&durable)) {
                    if *c > 0 {
                        set_word(&mut img, *w, *d);
                    }
                }
                if let Err(message) = res {
                    return Err(CrashFailure {
                        fence: rec.fence,
                        image_index: k,
                        seed: (!exhaustive).then_some(seed),
                        message,
                    });
                }
                k += 1;
            }
        }
        Ok(n)
    }
}

/// The uncertain words now: (word, values other than the durable one it may hold).
fn uncertain(st: &State) -> Vec<(usize, Vec<u64>)> {
    let mut choices = Vec::new();
    for (&w, p) in &st.pending {
        let base = word(&st.durable, w);
        let mut alts: Vec<u64> = Vec::new();
        for &v in &p.history {
            if v != base && !alts.contains(&v) {
                alts.push(v);
            }
        }
        if !alts.is_empty() {
            choices.push((w, alts));
        }
    }
    choices
}

fn choice_count(choices: &[(usize, Vec<u64>)]) -> u64 {
    choices.iter().fold(1u64, |acc, (_, alts)| {
        acc.saturating_mul(alts.len() as u64 + 1)
    })
}

impl Recorder {
    /// Record a flush of `[off, off+len)` that makes the pending words `words` (word
    /// indexes) flushed at their current values.
    fn mark_flushed(&self, off: usize, len: usize, words: std::ops::Range<usize>) {
        mark_flushed(&mut self.lock(), off, len, words);
    }
}

/// Record stores of `data` at `off` (non-empty) in `st`.
fn record_store(st: &mut State, off: usize, data: &[u8]) {
    st.live[off..off + data.len()].copy_from_slice(data);
    st.log.push(Event::Store {
        off,
        len: data.len(),
    });
    for w in off / 8..=(off + data.len() - 1) / 8 {
        let v = word(&st.live, w);
        let p = st.pending.entry(w).or_insert(Pending {
            history: Vec::new(),
            flushed: None,
        });
        if p.history.last() != Some(&v) {
            p.history.push(v);
        }
    }
}

/// Record a flush of `[off, off+len)` covering the pending words `words` in `st`.
fn mark_flushed(st: &mut State, off: usize, len: usize, words: std::ops::Range<usize>) {
    st.log.push(Event::Flush { off, len });
    for (_, p) in st.pending.range_mut(words) {
        p.flushed = Some(p.history.len() - 1);
    }
}

impl Persister for Recorder {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        check_bounds(off, buf.len(), self.len);
        buf.copy_from_slice(&self.lock().live[off..off + buf.len()]);
    }

    fn write(&self, off: usize, data: &[u8]) {
        check_bounds(off, data.len(), self.len);
        if data.is_empty() {
            return;
        }
        record_store(&mut self.lock(), off, data);
    }

    fn flush(&self, off: usize, len: usize) -> Result<(), PersistError> {
        check_bounds(off, len, self.len);
        if len == 0 {
            self.lock().log.push(Event::Flush { off, len });
            return Ok(());
        }
        let first = off / CACHE_LINE * CACHE_LINE / 8;
        let last = ((off + len - 1) / CACHE_LINE * CACHE_LINE + CACHE_LINE) / 8;
        self.mark_flushed(off, len, first..last);
        Ok(())
    }

    /// Only the words written are flushed, not the rest of their lines: the weakest that
    /// streaming stores promise (the edges of a hardware `write_flush` may flush whole lines).
    fn write_flush(&self, off: usize, data: &[u8]) -> Result<(), PersistError> {
        check_bounds(off, data.len(), self.len);
        if !data.is_empty() {
            // One lock: no other thread's store can fall between the store and its flush.
            let mut st = self.lock();
            record_store(&mut st, off, data);
            mark_flushed(
                &mut st,
                off,
                data.len(),
                off / 8..(off + data.len() - 1) / 8 + 1,
            );
        }
        Ok(())
    }

    /// Modelled as streaming, so that crash tests exercise the streaming paths.
    fn streams(&self) -> bool {
        true
    }

    fn drain(&self) -> Result<(), PersistError> {
        let mut st = self.lock();
        let st = &mut *st;
        if st.capture {
            if st.base.is_none() {
                // The first point since the history was cleared: the journal starts here.
                st.base = Some(Arc::new(st.durable.clone()));
                st.journal.clear();
            }
            let rec = PointRec {
                fence: st.fences,
                upto: st.journal.len(),
                choices: uncertain(st),
            };
            st.points.push(rec);
        }
        let index = st.fences;
        st.log.push(Event::Fence { index });
        st.fences += 1;
        let journaling = st.base.is_some();
        let mut done = Vec::new();
        for (&w, p) in st.pending.iter_mut() {
            if let Some(i) = p.flushed.take() {
                let v = p.history[i];
                if journaling && word(&st.durable, w) != v {
                    st.journal.push((w, v));
                }
                set_word(&mut st.durable, w, v);
                p.history.drain(..=i);
                if p.history.is_empty() {
                    done.push(w);
                }
            }
        }
        for w in done {
            st.pending.remove(&w);
        }
        Ok(())
    }
}

/// How to enumerate the images of a crash point.
#[derive(Clone, Debug)]
pub struct Enumerate {
    /// Enumerate every combination when there are at most this many.
    pub exhaustive_max: u64,
    /// Otherwise: this many random images (after the two extremes).
    pub samples: usize,
    /// Seed for random images; `None` reads `POOL_CRASH_SEED` or picks one from the clock.
    pub seed: Option<u64>,
}

impl Default for Enumerate {
    fn default() -> Self {
        Enumerate {
            exhaustive_max: 4096,
            samples: 512,
            seed: None,
        }
    }
}

impl Enumerate {
    fn resolve_seed(&self) -> u64 {
        if let Some(s) = self.seed {
            return s;
        }
        if let Some(s) = std::env::var("POOL_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return s;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    }
}

/// When the crash of a crash image happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMoment {
    /// Just before fence number `.0` (counted from 0 since the recorder was made).
    BeforeFence(usize),
    /// Now: after everything recorded so far.
    Now,
}

/// A failed crash-image check.
#[derive(Clone, Debug, thiserror::Error)]
#[error("crash image {image_index} before fence {fence} is inconsistent{}: {message}",
        seed.map(|s| format!(" (random sample, replay with POOL_CRASH_SEED={s})")).unwrap_or_default())]
pub struct CrashFailure {
    /// Fence number the crash precedes (or the fence count for "now").
    pub fence: usize,
    /// Position of the image in the enumeration.
    pub image_index: usize,
    /// The seed when the images were sampled.
    pub seed: Option<u64>,
    /// The checker's message.
    pub message: String,
}

/// What a crash at one moment may leave: the durable image plus uncertain words.
#[derive(Clone, Debug)]
pub struct CrashPoint {
    /// Number of fences before this moment.
    pub fence: usize,
    len: usize,
    /// The recorder's base image; the durable image is `base` with `journal[..upto]` applied.
    base: Arc<Vec<u8>>,
    journal: Arc<[(usize, u64)]>,
    upto: usize,
    /// (word index, values other than the durable one it may hold).
    choices: Vec<(usize, Vec<u64>)>,
}

impl CrashPoint {
    fn from_rec(
        rec: PointRec,
        len: usize,
        base: Arc<Vec<u8>>,
        journal: Arc<[(usize, u64)]>,
    ) -> CrashPoint {
        CrashPoint {
            fence: rec.fence,
            len,
            base,
            journal,
            upto: rec.upto,
            choices: rec.choices,
        }
    }

    /// Number of distinct images (saturating).
    pub fn image_count(&self) -> u64 {
        choice_count(&self.choices)
    }

    /// Number of words whose crash value is uncertain.
    pub fn uncertain_words(&self) -> usize {
        self.choices.len()
    }

    /// The durable image, padded to whole lines (built on demand).
    fn durable_padded(&self) -> Vec<u8> {
        let mut img = self.base.to_vec();
        for &(w, v) in &self.journal[..self.upto] {
            set_word(&mut img, w, v);
        }
        img
    }

    /// The image if nothing uncertain survived.
    pub fn durable_image(&self) -> Vec<u8> {
        let mut img = self.durable_padded();
        img.truncate(self.len);
        img
    }

    /// The images, as described in the module documentation.
    pub fn images(&self, opts: &Enumerate) -> Images<'_> {
        let exhaustive = self.image_count() <= opts.exhaustive_max;
        let seed = opts.resolve_seed();
        if !exhaustive {
            eprintln!(
                "crash point before fence {}: {} uncertain words, sampling {} images with seed {seed} \
                 (replay with POOL_CRASH_SEED={seed})",
                self.fence,
                self.choices.len(),
                opts.samples
            );
        }
        Images {
            point: self,
            durable: None,
            picks: Picks::new(&self.choices, exhaustive, opts.samples, seed),
        }
    }
}

/// Which value each uncertain word takes, image after image: index 0 is the durable value,
/// `c > 0` is `alts[c - 1]`.
struct Picks {
    radix: Vec<usize>,
    counter: Vec<usize>,
    exhaustive: bool,
    started: bool,
    done: bool,
    remaining: usize,
    emitted: usize,
    rng: u64,
}

impl Picks {
    fn new(choices: &[(usize, Vec<u64>)], exhaustive: bool, samples: usize, seed: u64) -> Picks {
        Picks {
            radix: choices.iter().map(|(_, a)| a.len()).collect(),
            counter: vec![0; choices.len()],
            exhaustive,
            started: false,
            done: false,
            remaining: samples + 2,
            emitted: 0,
            rng: seed,
        }
    }

    fn next_pick(&mut self) -> Option<&[usize]> {
        if self.done {
            return None;
        }
        if self.exhaustive {
            if self.started {
                // Mixed-radix increment; each digit ranges over 0..=alts.len().
                let mut k = 0;
                loop {
                    if k == self.counter.len() {
                        self.done = true;
                        return None;
                    }
                    self.counter[k] += 1;
                    if self.counter[k] <= self.radix[k] {
                        break;
                    }
                    self.counter[k] = 0;
                    k += 1;
                }
            }
            self.started = true;
            return Some(&self.counter);
        }
        if self.remaining == 0 {
            self.done = true;
            return None;
        }
        self.remaining -= 1;
        let n = self.emitted;
        self.emitted += 1;
        match n {
            0 => self.counter.fill(0),
            1 => self.counter.copy_from_slice(&self.radix),
            _ => {
                for (c, r) in self.counter.iter_mut().zip(&self.radix) {
                    *c = (splitmix(&mut self.rng) % (*r as u64 + 1)) as usize;
                }
            }
        }
        Some(&self.counter)
    }
}

/// Iterator over crash images (see [`CrashPoint::images`]).
pub struct Images<'a> {
    point: &'a CrashPoint,
    /// The point's durable image, built at the first image.
    durable: Option<Vec<u8>>,
    picks: Picks,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Iterator for Images<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let pick = self.picks.next_pick()?;
        let point = self.point;
        let durable = self.durable.get_or_insert_with(|| point.durable_padded());
        // Padded to whole lines, so that every uncertain word is inside; truncated after.
        let mut img = durable.clone();
        for (c, (w, alts)) in pick.iter().zip(&point.choices) {
            if *c > 0 {
                set_word(&mut img, *w, alts[c - 1]);
            }
        }
        img.truncate(point.len);
        Some(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::Flags;
    use std::collections::BTreeSet;

    fn all_images(p: &CrashPoint) -> BTreeSet<Vec<u8>> {
        p.images(&Enumerate::default()).collect()
    }

    #[test]
    fn unflushed_store_may_or_may_not_survive() {
        let r = Recorder::new(128);
        r.write_u64(8, 7);
        let imgs = all_images(&r.crash_point_now());
        assert_eq!(imgs.len(), 2);
        assert!(imgs.iter().any(|i| word(i, 1) == 0));
        assert!(imgs.iter().any(|i| word(i, 1) == 7));
    }

    #[test]
    fn flushed_and_fenced_survives_but_later_store_is_uncertain() {
        let r = Recorder::new(128);
        r.write_u64(0, 1);
        r.flush(0, 8).unwrap();
        r.write_u64(0, 2); // after the flush: not covered by it
        r.drain().unwrap();
        assert_eq!(word(&r.durable_image(), 0), 1);
        let imgs = all_images(&r.crash_point_now());
        let vals: BTreeSet<u64> = imgs.iter().map(|i| word(i, 0)).collect();
        assert_eq!(vals, [1, 2].into_iter().collect());
        // Before the fence: 0, 1 or 2.
        let before = &r.crash_points()[0];
        let vals: BTreeSet<u64> = all_images(before).iter().map(|i| word(i, 0)).collect();
        assert_eq!(vals, [0, 1, 2].into_iter().collect());
    }

    #[test]
    fn flush_covers_whole_cache_line_only() {
        let r = Recorder::new(256);
        r.write_u64(56, 5); // line 0
        r.write_u64(64, 6); // line 1
        r.flush(0, 1).unwrap(); // flushes line 0 only
        r.drain().unwrap();
        let d = r.durable_image();
        assert_eq!((word(&d, 7), word(&d, 8)), (5, 0));
        assert_eq!(r.crash_point_now().uncertain_words(), 1);
    }

    #[test]
    fn write_flush_covers_only_the_words_written() {
        let r = Recorder::new(128);
        r.write_u64(0, 1); // same line, stored but never flushed
        r.write_flush(8, &[0xAB; 12]).unwrap(); // words 1 and 2 (word 2 partly)
        r.write_u64_flush(24, 3).unwrap();
        r.drain().unwrap();
        let d = r.durable_image();
        assert_eq!(&d[8..20], &[0xAB; 12]);
        assert_eq!(word(&d, 3), 3);
        // Unlike `flush`, the line's other word is not covered: still uncertain.
        assert_eq!(word(&d, 0), 0);
        assert_eq!(r.crash_point_now().uncertain_words(), 1);
        let vals: BTreeSet<u64> = all_images(&r.crash_point_now())
            .iter()
            .map(|i| word(i, 0))
            .collect();
        assert_eq!(vals, [0, 1].into_iter().collect());
    }

    #[test]
    fn words_are_independent_and_exhaustive() {
        let r = Recorder::new(64);
        r.memcpy_persist(0, &[0xFFu8; 24], Flags::NO_FLUSH).unwrap();
        let p = r.crash_point_now();
        assert_eq!(p.image_count(), 8);
        assert_eq!(all_images(&p).len(), 8);
        // Torn at 8-byte granularity only: every word is all-0 or all-FF.
        for img in all_images(&p) {
            for w in 0..3 {
                assert!(matches!(word(&img, w), 0 | u64::MAX));
            }
        }
    }

    #[test]
    fn sampling_is_seeded_and_replayable() {
        let r = Recorder::new(4096);
        r.write(0, &[1u8; 4096]);
        let p = r.crash_point_now();
        assert!(p.image_count() > 4096);
        let opts = Enumerate {
            samples: 20,
            seed: Some(42),
            ..Enumerate::default()
        };
        let a: Vec<_> = p.images(&opts).collect();
        let b: Vec<_> = p.images(&opts).collect();
        assert_eq!(a.len(), 22);
        assert_eq!(a, b);
        assert!(a[0].iter().all(|&x| x == 0));
        assert!(a[1].iter().all(|&x| x == 1));
    }

    #[test]
    fn check_reports_failure_with_fence() {
        let r = Recorder::new(64);
        r.write_u64(0, 1);
        r.persist(0, 8).unwrap();
        r.write_u64(8, 2);
        let err = r
            .check_crash_images(&Enumerate::default(), |img| {
                if word(img, 1) == 2 && word(img, 0) == 1 {
                    Err("saw both".into())
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!(err.fence, 1);
        assert!(err.to_string().contains("saw both"));
        let n = r
            .check_crash_images(&Enumerate::default(), |_| Ok(()))
            .unwrap();
        assert_eq!(n, 2 + 2); // before fence 0: {0,1}; now: {w1=0, w1=2}
    }

    /// The in-place walk of `check_crash_images` sees exactly the images `crash_points` +
    /// `images` build, point by point, across history clears and capture pauses.
    #[test]
    fn in_place_check_matches_built_images() {
        let r = Recorder::new(300); // not a multiple of the line size
        r.set_capture(false);
        r.write_u64(0, 9);
        r.persist(0, 8).unwrap();
        r.clear_history();
        r.set_capture(true);
        let mut x = 1u64;
        for i in 0..40usize {
            x = splitmix(&mut x.clone());
            let off = (x as usize % 36) * 8;
            r.write_u64(off, x);
            if i % 3 == 0 {
                r.flush(off, 8).unwrap();
            }
            if i % 4 == 0 {
                r.drain().unwrap();
            }
            if i == 20 {
                r.set_capture(false);
            }
            if i == 30 {
                r.set_capture(true);
            }
        }
        let opts = Enumerate {
            exhaustive_max: 64,
            samples: 5,
            seed: Some(7),
        };
        let mut built: Vec<Vec<u8>> = Vec::new();
        for p in r.crash_points().iter().chain([&r.crash_point_now()]) {
            built.extend(p.images(&opts));
        }
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let n = r
            .check_crash_images(&opts, |img| {
                seen.push(img.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(n, built.len());
        assert_eq!(seen, built);
        assert!(r.crash_point_count() > 3);
        // The durable image of the last point equals the recorder's.
        assert_eq!(r.crash_point_now().durable_image(), r.durable_image());
        // Every point starts from the cleared-history durable state (word 0 = 9) or later.
        for p in r.crash_points() {
            assert_eq!(p.durable_image().len(), 300);
        }
    }

    #[test]
    fn moments_name_the_fence_and_now() {
        let r = Recorder::new(64);
        r.write_u64(0, 1);
        r.persist(0, 8).unwrap();
        r.write_u64(8, 2);
        let mut seen = Vec::new();
        r.check_crash_images_at(&Enumerate::default(), |m, img| {
            seen.push((m, word(img, 0), word(img, 1)));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (CrashMoment::BeforeFence(0), 0, 0),
                (CrashMoment::BeforeFence(0), 1, 0),
                (CrashMoment::Now, 1, 0),
                (CrashMoment::Now, 1, 2),
            ]
        );
    }

    #[test]
    fn log_records_everything() {
        let r = Recorder::new(64);
        r.write(3, &[1, 2]);
        r.persist(0, 64).unwrap();
        assert_eq!(
            r.log(),
            vec![
                Event::Store { off: 3, len: 2 },
                Event::Flush { off: 0, len: 64 },
                Event::Fence { index: 0 }
            ]
        );
    }
}
