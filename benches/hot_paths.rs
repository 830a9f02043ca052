//! Criterion benchmarks of the hot operations (being written).

use criterion::{Criterion, criterion_group, criterion_main};

fn placeholder(c: &mut Criterion) {
    c.bench_function("seal_300B", |b| {
        let key = [7u8; 32];
        let record = vec![0x42u8; 300];
        b.iter(|| blindpass::crypto::seal::seal(&key, b"aad", &record));
    });
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
