//! Prints this process's measured futex wake-up latency and the wait budget the
//! window path derives from it for `N` local ranks (`wake_probe N`, default 2).
//! Start several at once to see how the measurement behaves while other ranks start.
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let wake = tutti_transport::wake_latency();
    let b = tutti_transport::WaitBudget::for_local_ranks(n);
    println!(
        "pid {} wake {:?} -> spin {:?} yields {:?} ({} local ranks, {} cores)",
        std::process::id(),
        wake,
        b.spin,
        b.yields,
        n,
        tutti_transport::cores()
    );
}
