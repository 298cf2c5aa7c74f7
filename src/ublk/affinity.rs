//! Which CPUs a queue's server thread, and its io_uring workers, may run on.
//!
//! libublk pins each queue's thread to the CPUs blk-mq maps to that queue.
//! With one queue per CPU that is a single CPU — the very CPU whose
//! submitters fill the queue — so the submitter and the server take turns on
//! it while the other CPUs idle: every request costs a context switch each
//! way and nothing overlaps. Measured in one 7.3 TCG boot (bench/README,
//! "Queue affinity"), letting the threads run anywhere raised 4 KiB QD32
//! IOPS 1.4–1.8× and 128 KiB writes 2× for pmem-stack — and rublk's null
//! target, the same transport, 1.7×. QD1 has nothing to overlap: user copy's
//! QD1 reads still gained (1.3–1.7×); the direct path's QD1 fsync lost
//! 10–15 % until its io_uring workers were kept beside their queue (below).
//!
//! The default, [`Affinity::Node`], widens a queue's CPUs to every CPU of
//! the NUMA nodes they belong to: the server can run beside its submitter
//! instead of in turn with it, and still never leaves the memory node its
//! queue is local to. [`Affinity::Queue`] keeps libublk's pinning.
//!
//! Applied from the control thread once the device is live (libublk pins
//! the threads while it starts the queues), and again by every recovered
//! server, which gets fresh threads.
//!
//! io_uring's workers are another matter ([`QueueCpus::workers`],
//! [`pin_io_workers`]). On the direct path every request its queue thread
//! does not copy itself hops to one (the pmem driver takes no `REQ_NOWAIT`
//! I/O), and io_uring lets them run on
//! any CPU and starts as many as it likes. They are kept beside their
//! queue: on its node's CPUs other than the queue's own (where its
//! submitters run), at most one per CPU. An unpinned queue thread meets its
//! worker there, and a wake-up within one CPU costs no inter-processor
//! interrupt. In two 7.3 TCG runs of 5 rounds (bench/README, "io_uring
//! workers on the direct path") that raised QD1 4 KiB reads from 0.90× to
//! 1.43–1.55× rublk loop and QD1 fsync writes from 1.39× to 2.04–2.15×, and
//! left 4 KiB QD32 level. Workers on the queue's own CPUs, the first cut,
//! lost (QD1 reads 0.77×).

use std::path::Path;

use libublk::ctrl::{UblkCtrl, UblkQueueAffinity};
use serde::{Deserialize, Serialize};

/// Where a queue's server thread runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// Any CPU of the NUMA nodes of the queue's CPUs.
    #[default]
    Node,
    /// Only the CPUs blk-mq maps to the queue (libublk's pinning).
    Queue,
}

impl Affinity {
    /// The name used in logs, JSON and `--affinity`.
    pub const fn name(self) -> &'static str {
        match self {
            Affinity::Node => "node",
            Affinity::Queue => "queue",
        }
    }
}

const NODES: &str = "/sys/devices/system/node";

/// Where one queue's work may run, asked of the kernel and sysfs once per
/// server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueCpus {
    /// The CPUs blk-mq maps to the queue: its submitters'.
    own: Vec<usize>,
    /// Every CPU of the NUMA nodes that hold `own` (see [`node_cpus`]).
    node: Vec<usize>,
}

impl QueueCpus {
    fn new(own: Vec<usize>, nodes: &[Vec<usize>]) -> QueueCpus {
        QueueCpus {
            node: node_cpus(&own, nodes),
            own,
        }
    }

    /// Where the queue's io_uring workers run (see [`pin_io_workers`]): with
    /// [`Affinity::Node`], on the CPUs of the queue's nodes other than its
    /// own — its submitters hold those, and the unpinned queue thread that
    /// hands the worker its requests runs beside them — or its own where the
    /// node has no other; with [`Affinity::Queue`], beside the pinned queue
    /// thread on the queue's CPUs.
    pub fn workers(&self, affinity: Affinity) -> Vec<usize> {
        let others: Vec<usize> = self
            .node
            .iter()
            .copied()
            .filter(|cpu| !self.own.contains(cpu))
            .collect();
        if affinity == Affinity::Queue || others.is_empty() {
            self.own.clone()
        } else {
            others
        }
    }
}

/// The [`QueueCpus`] of each of the `queues` queues of `ctrl`'s device;
/// `None` (logged) where the kernel does not say.
pub fn queue_cpus(ctrl: &UblkCtrl, queues: u16) -> Vec<Option<QueueCpus>> {
    let id = ctrl.dev_info().dev_id;
    let nodes = numa_nodes(Path::new(NODES));
    (0..queues)
        .map(|qid| {
            let mut mapped = UblkQueueAffinity::new();
            match ctrl.get_queue_affinity(u32::from(qid), &mut mapped) {
                Ok(_) => Some(QueueCpus::new(mapped.to_bits_vec(), &nodes)),
                Err(err) => {
                    log::warn!("/dev/ublkb{id}: queue {qid}: its CPUs are unknown ({err})");
                    None
                }
            }
        })
        .collect()
}

/// [`QueueCpus::workers`] of each queue; empty where its CPUs are unknown.
pub fn io_worker_cpus(queues: &[Option<QueueCpus>], affinity: Affinity) -> Vec<Vec<usize>> {
    queues
        .iter()
        .map(|cpus| cpus.as_ref().map_or_else(Vec::new, |c| c.workers(affinity)))
        .collect()
}

/// Give each queue thread of `ctrl`'s device (queue *n* has `queues[n]`)
/// the CPUs `affinity` asks for. Failures are logged, never fatal: a thread
/// that keeps its pinning serves all the same.
pub fn apply(ctrl: &UblkCtrl, queues: &[Option<QueueCpus>], affinity: Affinity) {
    let id = ctrl.dev_info().dev_id;
    if affinity == Affinity::Queue {
        log::info!("/dev/ublkb{id}: queue threads stay on their queues' CPUs");
        return;
    }
    for (qid, cpus) in (0u32..).zip(queues) {
        let Some(QueueCpus { own, node }) = cpus else {
            continue;
        };
        let tid = match ctrl.get_queue_tid(qid) {
            Ok(tid) => tid,
            Err(err) => {
                log::warn!("/dev/ublkb{id}: queue {qid}: its thread keeps its CPUs ({err})");
                continue;
            }
        };
        match set_thread_cpus(tid, node) {
            Ok(()) => log::info!(
                "/dev/ublkb{id}: queue {qid} (CPUs {own:?}): thread {tid} runs on CPUs {node:?}"
            ),
            Err(err) => log::warn!(
                "/dev/ublkb{id}: queue {qid}: cannot move thread {tid} to CPUs {node:?} ({err}); it keeps CPUs {own:?}"
            ),
        }
    }
}

/// Keep the io_uring workers of queue `qid` on `cpus` ([`QueueCpus::workers`]),
/// at most one bounded worker per CPU: more than can run at once only adds
/// switches. Call from the queue's own thread once it has submitted to its
/// ring: both settings belong to the calling thread's io_uring context.
/// Failures are logged, never fatal: the workers then run where io_uring
/// puts them.
pub fn pin_io_workers(qid: u16, cpus: &[usize]) {
    let Some(set) = cpu_set(cpus) else {
        log::warn!(
            "queue {qid}: io_uring workers run where io_uring puts them (CPUs {cpus:?} unusable)"
        );
        return;
    };
    let workers = u32::try_from(cpus.len()).unwrap_or(u32::MAX);
    // [bounded (regular file and block I/O), unbounded]; 0 keeps a limit.
    let mut limits = [workers, 0];
    let result = libublk::io::with_task_io_ring(|ring| {
        let submitter = ring.submitter();
        submitter
            .register_iowq_aff(&set)
            .and_then(|()| submitter.register_iowq_max_workers(&mut limits))
    });
    match result {
        Ok(()) => log::info!("queue {qid}: io_uring workers on CPUs {cpus:?}, at most {workers}"),
        Err(err) => log::warn!(
            "queue {qid}: io_uring workers run where io_uring puts them (cannot keep them on CPUs {cpus:?}: {err})"
        ),
    }
}

/// `cpus` as a `cpu_set_t`; `None` if empty or one is beyond its size.
fn cpu_set(cpus: &[usize]) -> Option<libc::cpu_set_t> {
    if cpus.is_empty() || cpus.iter().any(|&cpu| cpu >= libc::CPU_SETSIZE as usize) {
        return None;
    }
    // SAFETY: `cpu_set_t` is a plain array of integers; all zeroes is the
    // empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` < CPU_SETSIZE (checked above), so the bit is inside
        // `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Some(set)
}

/// The CPUs of every node that holds one of `queue_cpus`; `queue_cpus`
/// themselves when no node holds them (no NUMA information: then all CPUs
/// are one node, see [`numa_nodes`]).
fn node_cpus(queue_cpus: &[usize], nodes: &[Vec<usize>]) -> Vec<usize> {
    let mut cpus: Vec<usize> = nodes
        .iter()
        .filter(|node| node.iter().any(|cpu| queue_cpus.contains(cpu)))
        .flatten()
        .copied()
        .chain(queue_cpus.iter().copied())
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// The CPU lists of the NUMA nodes under `dir` (`nodeN/cpulist`); without
/// any (a kernel built without NUMA), one node of the online CPUs.
fn numa_nodes(dir: &Path) -> Vec<Vec<usize>> {
    let mut nodes: Vec<Vec<usize>> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|name| name.strip_prefix("node"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .filter_map(|e| std::fs::read_to_string(e.path().join("cpulist")).ok())
                .filter_map(|list| parse_cpulist(&list))
                .filter(|cpus| !cpus.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if nodes.is_empty()
        && let Some(online) = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|list| parse_cpulist(&list))
    {
        nodes.push(online);
    }
    nodes
}

/// Parse a kernel CPU list (`0-3,8,10-11`; empty for none).
fn parse_cpulist(list: &str) -> Option<Vec<usize>> {
    let list = list.trim();
    if list.is_empty() {
        return Some(Vec::new());
    }
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?);
                if first > last || last >= rustix::thread::CpuSet::MAX_CPU {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

fn set_thread_cpus(tid: i32, cpus: &[usize]) -> std::io::Result<()> {
    let tid = rustix::thread::Pid::from_raw(tid)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut set = rustix::thread::CpuSet::new();
    for &cpu in cpus {
        if cpu >= rustix::thread::CpuSet::MAX_CPU {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        set.set(cpu);
    }
    rustix::thread::sched_setaffinity(Some(tid), &set).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist("\n"), Some(vec![]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("a"), None);
        assert_eq!(parse_cpulist("0-99999"), None);
    }

    #[test]
    fn a_queue_widens_to_its_nodes() {
        let nodes = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]];
        assert_eq!(node_cpus(&[1], &nodes), vec![0, 1, 2, 3]);
        assert_eq!(node_cpus(&[5, 6], &nodes), vec![4, 5, 6, 7]);
        assert_eq!(node_cpus(&[3, 4], &nodes), (0..8).collect::<Vec<_>>());
        // A CPU no node lists (offline, or no NUMA information) stays.
        assert_eq!(node_cpus(&[9], &nodes), vec![9]);
        assert_eq!(node_cpus(&[0], &[]), vec![0]);
    }

    #[test]
    fn nodes_of_this_machine() {
        let nodes = numa_nodes(Path::new(NODES));
        assert!(!nodes.is_empty(), "no NUMA node and no online CPU list");
        let me = rustix::thread::sched_getaffinity(None).expect("own affinity");
        assert!(
            nodes.iter().flatten().any(|&cpu| me.is_set(cpu)),
            "no node holds a CPU this test may run on: {nodes:?}"
        );
    }

    #[test]
    fn numa_nodes_read_a_sysfs_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, list) in [("node0", "0-1\n"), ("node1", "2,3\n"), ("node2", "\n")] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
            std::fs::write(dir.path().join(name).join("cpulist"), list).expect("write");
        }
        std::fs::create_dir(dir.path().join("power")).expect("mkdir");
        let mut nodes = numa_nodes(dir.path());
        nodes.sort();
        assert_eq!(nodes, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn workers_go_beside_their_queue() {
        let nodes = vec![vec![0, 1, 2, 3], vec![4, 5]];
        let workers = |own: Vec<usize>, nodes: &[Vec<usize>], affinity| {
            QueueCpus::new(own, nodes).workers(affinity)
        };
        assert_eq!(workers(vec![1], &nodes, Affinity::Node), vec![0, 2, 3]);
        assert_eq!(workers(vec![4, 5], &nodes, Affinity::Node), vec![4, 5]);
        assert_eq!(workers(vec![0], &[vec![0, 1]], Affinity::Node), vec![1]);
        // One CPU, or no NUMA information: the queue's own.
        assert_eq!(workers(vec![0], &[vec![0]], Affinity::Node), vec![0]);
        assert_eq!(workers(vec![7], &nodes, Affinity::Node), vec![7]);
        // Pinned queue threads keep their workers beside them.
        assert_eq!(workers(vec![1], &nodes, Affinity::Queue), vec![1]);
    }

    #[test]
    fn cpu_sets() {
        let set = cpu_set(&[0, 3, 1023]).expect("in range");
        // SAFETY: reading bits of a valid set.
        let bits: Vec<usize> = (0..1024)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        assert_eq!(bits, vec![0, 3, 1023]);
        assert!(cpu_set(&[]).is_none());
        assert!(cpu_set(&[1024]).is_none());
    }

    #[test]
    fn a_thread_moves() {
        let me = rustix::thread::sched_getaffinity(None).expect("own affinity");
        let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| me.is_set(c))
            .collect();
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        set_thread_cpus(tid, &cpus[..1]).expect("narrow");
        let now = rustix::thread::sched_getaffinity(None).expect("affinity");
        assert!(now.is_set(cpus[0]));
        assert_eq!(now.count(), 1);
        set_thread_cpus(tid, &cpus).expect("restore");
        assert!(set_thread_cpus(tid, &[rustix::thread::CpuSet::MAX_CPU]).is_err());
    }
}
