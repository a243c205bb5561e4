//! The sandboxed test process of the server's own tests: what `meshplane test-worker` is in
//! the real binary (see `meshplane_server::checks`).

fn main() -> std::process::ExitCode {
    meshplane_server::checks::worker_main()
}
