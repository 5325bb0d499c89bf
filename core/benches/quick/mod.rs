//! The `main` of the container and HLS benches: criterion with a 1 s
//! warm-up, 3 s of measurement and 20 samples per benchmark.

/// Defines the bench `main` running `$target` with the short settings.
macro_rules! quick_bench_main {
    ($target:ident) => {
        fn config() -> criterion::Criterion {
            criterion::Criterion::default()
                .warm_up_time(std::time::Duration::from_secs(1))
                .measurement_time(std::time::Duration::from_secs(3))
                .sample_size(20)
        }

        criterion::criterion_group! {
            name = benches;
            config = config();
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
}
