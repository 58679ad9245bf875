//! Writes a fuzzing seed corpus for `fuzz/fuzz_targets/rpmem_decode.rs`: one valid frame of every
//! message type plus a valid lane connection block, so the fuzzer starts past the magic checks.
//!
//! Usage: `cargo run -p rpmem-proto --example seed_corpus -- fuzz/corpus/rpmem_decode`

use std::net::{IpAddr, Ipv6Addr};

use rpmem_proto::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: seed_corpus OUTPUT_DIR")?;
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let attr = PoolAttr {
        signature: *b"PMEMOBJ\0",
        major: 6,
        uuid: [7; 16],
        ..PoolAttr::default()
    };
    let req = PoolRequest {
        pool_size: 8 << 20,
        nlanes: 4,
        buff_size: 64,
        provider: Provider::Tcp,
        persist_method: PersistMethod::General,
        descriptor: "dir/pool.set".into(),
    };
    let resp = PoolResp {
        status: Status::Ok,
        nlanes: 4,
        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        port: 40000,
        persist_method: PersistMethod::General,
        provider: Provider::Tcp,
        rkey: 0x1234,
        raddr: 0x7f00_0000_0000,
        pool_size: 8 << 20,
        secret: Secret([0x5a; 32]),
    };
    let messages = [
        Message::Hello(Hello {
            major: PROTO_MAJOR,
            minor: PROTO_MINOR,
            capabilities: Capabilities::KNOWN,
        }),
        Message::HelloResp(HelloResp {
            status: Status::Ok,
            major: PROTO_MAJOR,
            minor: PROTO_MINOR,
            capabilities: Capabilities::DEEP_PERSIST,
        }),
        Message::Create {
            pool: req.clone(),
            attr,
        },
        Message::CreateResp(resp.clone()),
        Message::Open(req),
        Message::OpenResp { resp, attr },
        Message::SetAttr(attr),
        Message::SetAttrResp(Status::Ok),
        Message::Close { remove: true },
        Message::CloseResp(Status::Ok),
        Message::Remove {
            descriptor: "pool.set".into(),
            force: true,
            pool_set: false,
        },
        Message::RemoveResp(Status::Ok),
        Message::error(
            0x0003,
            Status::PoolsetNotFound,
            "no pool.set in poolset-dir",
        ),
        Message::Persist {
            lane: 1,
            relaxed: true,
            deep: false,
            offset: 4096,
            length: 64,
        },
        Message::PersistResp {
            lane: 1,
            status: Status::Ok,
        },
    ];
    for m in &messages {
        let name = format!("{}.bin", m.msg_type().name().to_lowercase());
        std::fs::write(dir.join(name), encode(m)?)?;
    }
    let connect = LaneConnect {
        major: PROTO_MAJOR,
        minor: PROTO_MINOR,
        lane: 0,
        secret: Secret([0x5a; 32]),
    };
    std::fs::write(dir.join("lane_connect.bin"), connect.encode())?;
    println!("wrote {} seeds to {}", messages.len() + 1, dir.display());
    Ok(())
}
