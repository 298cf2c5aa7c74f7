//! Glue to the kernel's ublk driver, split the way the driver is:
//!
//! * [`control`]: the control plane (`/dev/ublk-control`): add, recover,
//!   stop, delete, describe; runs in the server's main thread.
//! * [`run`]: serving a device: the serve loop between the control
//!   commands, from a granted device to running queues and a durable stop.
//! * [`plane`]: the data planes, one thread per hardware queue: user copy
//!   and bounce buffers (`copy`), the direct path (`direct`, 6.16+) and
//!   batch I/O (`batch`, 7.0+), and what they share.
//! * [`features`]: what the kernel offers and a device was granted, by name.
//! * [`affinity`]: which CPUs the queue threads run on.
//! * [`tuning`]: how the queues run, from the server's environment (for
//!   measurements: ring setup, threads per queue).

pub mod affinity;
pub mod control;
pub mod features;
pub mod plane;
pub mod run;
pub mod tuning;
