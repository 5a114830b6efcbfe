//! Prints N ports on 127.0.0.1 that the system says are free, one a line, all different:
//! `checks/demo_smoke.sh` runs the demo on them, so that nothing else holding a port fails it.
//! Each port comes from binding port 0; all are held until all are chosen, so none repeats.

use std::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).as_deref().unwrap_or("1").parse()?;
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    for l in &listeners {
        println!("{}", l.local_addr()?.port());
    }
    Ok(())
}
