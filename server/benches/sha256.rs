//! SHA-256 on the native server: sha2 as compiled (SHA-NI or portable), the AVX2 block function
//! it installs on x86-64 CPUs without SHA-NI, and the core's `Hasher` with it installed.
//!
//!   cargo bench -p berth-server --bench sha256

use std::hint::black_box;

use berth::Hasher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::Digest as _;

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("sha256 1 MiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("sha2 (as compiled: SHA-NI or portable)", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(&data))))
    });
    if let Some(blocks) = berth_server::sha256::blocks() {
        group.bench_function("AVX2 block function", |b| {
            b.iter(|| {
                let mut state = [0u32; 8];
                blocks(&mut state, black_box(&data));
                black_box(state)
            })
        });
    }
    // Last: installing is for the whole process. Hasher::update with whatever is installed.
    let installed = berth_server::sha256::install();
    let name = if installed {
        "Hasher (AVX2 installed)"
    } else {
        "Hasher (sha2)"
    };
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut h = Hasher::new(berth::Algorithm::Sha256);
            for chunk in data.chunks(64 * 1024) {
                h.update(chunk);
            }
            black_box(h.finish())
        })
    });
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
