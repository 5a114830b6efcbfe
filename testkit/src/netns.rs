//! Network partitions on one machine: each node a network namespace the test creates, joined by a
//! router namespace whose firewall the test changes to cut nodes apart and heal them again.
//!
//! Layout of a [`Lab`] on its own subnet `10.77.N.0/24` (N free at creation):
//!
//! - `tg<pid>-core`: the router, forwarding between its links, with an `unreachable` default
//!   route. A partition is an nftables rule here that drops packets between two sets of nodes;
//!   nothing else in the machine's firewall is touched.
//! - one namespace per node, `tg<pid>-<name>`, with one veth to the router (node
//!   `10.77.N.(4k+2)`, router `10.77.N.(4k+1)`) and its default route through it.
//! - the test's own namespace reaches every node through a veth to the router
//!   (`10.77.N.1` ↔ `10.77.N.2`), with a route to the subnet through it.
//!
//! Before any link exists, an `unreachable` route for the subnet is added here (a higher metric
//! than the route through the router), so no packet for the lab's addresses can leave the machine
//! whatever goes down. [`Lab`]'s `Drop` kills what the lab spawned and deletes every namespace,
//! link and route it created, also when a test panics; a lab left by a killed test run (its
//! process gone) is removed by the next one.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, and a writable `/proc/sys` in a new
//! namespace, which a container without `--privileged` lacks), `ip` (iproute2) and `nft`:
//! without them [`Lab::new`] panics saying so. The one exception is [`skipped`]: `scripts/test`
//! probes the machine first and, where no lab can be made (and CI has not said the tests are
//! required), runs the tests with [`SKIP_VAR`] set to the reason, which its summary repeats.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::find_binary;

/// Set by `scripts/test` to why this machine cannot make a lab (its probe failed): a test that
/// needs one returns at once through [`skipped`]. CI sets `TAPGATE_TEST_NETNS=required`, and
/// the script never sets this then.
pub const SKIP_VAR: &str = "TAPGATE_TEST_NETNS_SKIP";

/// Whether `test`, which needs a lab, is not to run here ([`SKIP_VAR`] set); says so and why.
pub fn skipped(test: &str) -> bool {
    match std::env::var(SKIP_VAR) {
        Ok(why) if !why.is_empty() => {
            eprintln!("{test}: not run: no network namespaces here ({why})");
            true
        }
        _ => false,
    }
}

/// The lab's first two octets; the third is chosen free at creation.
const PREFIX: [u8; 2] = [10, 77];

/// A route metric above any the lab's own routes use: the safety net under them.
const SAFETY_METRIC: &str = "4000";

/// The installed `redis-server` (labs run programs here, never in containers).
pub fn redis_server() -> PathBuf {
    find_binary("redis-server", "redis-server")
}

/// The installed `mosquitto`.
pub fn mosquitto() -> PathBuf {
    find_binary("mosquitto", "mosquitto")
}

/// Runs `ip args…`, returning what it printed or why it failed.
fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`ip`], panicking with the command's error: a lab that cannot be built is a failed test.
fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("network lab: {e}"))
}

/// [`must`] inside `namespace`: `ip -n <namespace> args…`.
fn must_in(namespace: &str, args: &[&str]) {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    must(&all);
}

/// Panics saying what a lab needs unless network namespaces and `nft` are available.
fn require_tools() {
    if let Err(e) = ip(&["netns", "list"]) {
        panic!(
            "network namespaces are unavailable ({e}): the partition tests need root \
             (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2 and nftables"
        );
    }
    find_binary("nft", "nftables");
}

/// One node of a lab: a namespace and its address.
#[derive(Debug, Clone)]
pub struct Node {
    /// The name the test gave it.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address, reachable from the test's namespace and from the other nodes.
    pub ip: Ipv4Addr,
}

/// Namespaces, links and routes for one test; everything is removed on drop.
pub struct Lab {
    /// `tg<pid>`: the start of every namespace's name.
    tag: String,
    /// N in `10.77.N.0/24`.
    third: u8,
    subnet: String,
    core: String,
    nodes: Vec<Node>,
    root_link: String,
    dir: tempfile::TempDir,
    processes: Vec<NsProcess>,
}

impl Lab {
    /// Builds a lab with one namespace per name in `nodes` (at most 60), all reachable.
    pub fn new(nodes: &[&str]) -> Self {
        assert!(nodes.len() <= 60, "a lab has at most 60 nodes");
        require_tools();
        remove_abandoned_labs();
        // From here on the lab's `Drop` removes whatever of it exists, also if a step panics.
        let mut lab = Self::named(free_subnet());
        // First the safety net: from here on, nothing for the subnet can leave the machine.
        must(&[
            "route",
            "add",
            "unreachable",
            &lab.subnet,
            "metric",
            SAFETY_METRIC,
        ]);
        lab.add_router();
        lab.link_root();
        for (k, name) in nodes.iter().enumerate() {
            lab.add_node(k as u32 + 1, name);
        }
        lab.nft(
            "add table inet lab\n\
             add chain inet lab forward { type filter hook forward priority 0; policy accept; }\n",
        );
        lab
    }

    /// A lab on `10.77.<third>.0/24` with its names chosen and nothing made yet.
    fn named(third: u8) -> Self {
        let tag = format!("tg{}", std::process::id());
        Self {
            subnet: format!("{}.{}.{third}.0/24", PREFIX[0], PREFIX[1]),
            core: format!("{tag}-core"),
            root_link: format!("{tag}-{third}"),
            tag,
            third,
            nodes: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("tapgate-lab-")
                .tempdir()
                .expect("temp dir"),
            processes: Vec::new(),
        }
    }

    /// The lab's address `10.77.<third>.<host>`.
    fn addr(&self, host: u32) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.third, host as u8)
    }

    /// The router's namespace, forwarding, with an `unreachable` default route: a packet it has
    /// no link for goes nowhere.
    fn add_router(&self) {
        if let Err(e) = ip(&["netns", "add", &self.core]) {
            panic!(
                "cannot create a network namespace ({e}): the partition tests need root \
                 (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
            );
        }
        must_in(&self.core, &["route", "add", "unreachable", "default"]);
        must_in(&self.core, &["link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.core,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )
        .unwrap_or_else(|e| panic!("network lab: {e}"));
    }

    /// The veth between the test's own namespace (`10.77.N.1`) and the router (`10.77.N.2`), and
    /// the test's route to the subnet through it.
    fn link_root(&self) {
        let (root, core) = (&self.root_link, &self.core);
        must(&[
            "link", "add", root, "type", "veth", "peer", "name", "toroot", "netns", core,
        ]);
        must(&["addr", "add", &format!("{}/30", self.addr(1)), "dev", root]);
        must(&["link", "set", root, "up"]);
        let router = format!("{}/30", self.addr(2));
        must_in(core, &["addr", "add", &router, "dev", "toroot"]);
        must_in(core, &["link", "set", "toroot", "up"]);
        let via = self.addr(2).to_string();
        must(&["route", "add", &self.subnet, "via", &via, "metric", "10"]);
    }

    /// Node `k` (from 1), `name`: its namespace, its veth `n<k>` to the router (router
    /// `10.77.N.(4k+1)`, node `10.77.N.(4k+2)`) and its default route through it. The node is
    /// recorded before its namespace is made, so `Drop` deletes it whichever step fails.
    fn add_node(&mut self, k: u32, name: &str) {
        let namespace = format!("{}-{name}", self.tag);
        let (router, node) = (self.addr(4 * k + 1), self.addr(4 * k + 2));
        self.nodes.push(Node {
            name: name.to_owned(),
            namespace: namespace.clone(),
            ip: node,
        });
        must(&["netns", "add", &namespace]);
        let link = format!("n{k}");
        must_in(
            &self.core,
            &[
                "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ],
        );
        let router_addr = format!("{router}/30");
        must_in(&self.core, &["addr", "add", &router_addr, "dev", &link]);
        must_in(&self.core, &["link", "set", &link, "up"]);
        must_in(&namespace, &["link", "set", "lo", "up"]);
        let node_addr = format!("{node}/30");
        must_in(&namespace, &["addr", "add", &node_addr, "dev", "eth0"]);
        must_in(&namespace, &["link", "set", "eth0", "up"]);
        let via = router.to_string();
        must_in(&namespace, &["route", "add", "default", "via", &via]);
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the lab"))
    }

    /// A folder for the lab's files (logs, configs), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Cuts every node of `a` off from every node of `b`, both ways (packets are dropped, as a
    /// failed link drops them). The test's own namespace still reaches all of them.
    pub fn cut(&self, a: &[&str], b: &[&str]) {
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|n| self.node(n).ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = (set(a), set(b));
        self.nft(&format!(
            "add rule inet lab forward ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n\
             add rule inet lab forward ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n"
        ));
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.nft("flush chain inet lab forward\n");
    }

    fn nft(&self, script: &str) {
        let file = self.dir.path().join("rules.nft");
        fs::write(&file, script).expect("write nft script");
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.core,
                "nft",
                "-f",
                &file.display().to_string(),
            ],
        )
        .unwrap_or_else(|e| panic!("network lab: {e}"));
    }

    /// Starts `program args…` in `node`'s namespace, its output in `<dir>/<label>.log`, and waits
    /// until it accepts TCP connections on `port` at the node's address. The lab kills it on drop
    /// (or earlier through the returned index and [`Lab::process`]).
    pub fn spawn(
        &mut self,
        node: &str,
        label: &str,
        program: &Path,
        args: &[String],
        port: u16,
    ) -> usize {
        let node = self.node(node).clone();
        let log = self.dir.path().join(format!("{label}.log"));
        let mut process = NsProcess {
            label: label.to_owned(),
            namespace: node.namespace.clone(),
            program: program.to_owned(),
            args: args.to_vec(),
            log,
            child: None,
            wait_for: SocketAddrV4::new(node.ip, port),
        };
        process.start();
        self.processes.push(process);
        self.processes.len() - 1
    }

    /// A process [`Lab::spawn`] started.
    pub fn process(&mut self, index: usize) -> &mut NsProcess {
        &mut self.processes[index]
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.label, p.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for p in &mut self.processes {
            p.kill();
        }
        for node in &self.nodes {
            let _ = ip(&["netns", "del", &node.namespace]);
        }
        let _ = ip(&["netns", "del", &self.core]);
        // The route through the router goes with its link.
        let _ = ip(&["link", "del", &self.root_link]);
        let _ = ip(&[
            "route",
            "del",
            "unreachable",
            &self.subnet,
            "metric",
            SAFETY_METRIC,
        ]);
    }
}

/// A `10.77.N.0/24` no route of this machine uses yet.
fn free_subnet() -> u8 {
    let routes = ip(&["route", "show", "table", "all"]).unwrap_or_default();
    (100..=250u8)
        .find(|n| !routes.contains(&format!("{}.{}.{n}.", PREFIX[0], PREFIX[1])))
        .expect("no free 10.77.N.0/24 for a network lab")
}

/// Deletes the namespaces, links and routes of labs whose test process is gone (a run killed
/// before its labs' `Drop`).
fn remove_abandoned_labs() {
    let list = ip(&["netns", "list"]).unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("tg")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
    let routes = ip(&["route", "show"]).unwrap_or_default();
    for line in routes.lines() {
        let prefix = format!("{}.{}.", PREFIX[0], PREFIX[1]);
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        let subnet = if first == "unreachable" {
            words.next().unwrap_or_default()
        } else {
            first
        };
        // A lab's route whose router link is gone is left over (the link goes with its lab).
        if subnet.starts_with(&prefix) && first == "unreachable" {
            let third = subnet.split('.').nth(2).unwrap_or_default();
            let in_use = ip(&["link", "show"])
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(&format!("-{third}@")));
            if !in_use {
                let _ = ip(&[
                    "route",
                    "del",
                    "unreachable",
                    subnet,
                    "metric",
                    SAFETY_METRIC,
                ]);
            }
        }
    }
}

/// A process in a lab node's namespace: killed on drop, restartable.
pub struct NsProcess {
    label: String,
    namespace: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    wait_for: SocketAddrV4,
}

impl NsProcess {
    /// Starts it (again) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.label);
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.label));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.wait_for.into(), Duration::from_millis(200)).is_err()
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited ({status}):\n{}", self.label, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{} not listening on {} within 10 s:\n{}",
                self.label,
                self.wait_for,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`ip netns exec` runs the program in its own place: the child is the program).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
