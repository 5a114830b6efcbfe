//! Prints what docker-compose.yml tells each tapgate program, one setting a line:
//! `service<TAB>env<TAB>NAME` or `service<TAB>flag<TAB>--name`. `checks/demo_smoke.sh` holds
//! these against the real binaries' `--help`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for s in tapgate_checks::compose::service_settings("docker-compose.yml")? {
        for e in &s.env {
            println!("{}\tenv\t{e}", s.service);
        }
        for word in s.command.iter().filter(|w| w.starts_with("--")) {
            println!("{}\tflag\t{word}", s.service);
        }
        if let Some(sub) = s.command.first().filter(|w| !w.starts_with('-')) {
            println!("{}\tsubcommand\t{sub}", s.service);
        }
    }
    Ok(())
}
