//! Glue to the kernel's ublk driver, split the way the driver is:
//!
//! * [`control`]: the control plane (`/dev/ublk-control`): add, recover,
//!   stop, delete, describe; runs in the server's main thread.
//! * [`run`]: serving a device: the serve loop between the control
//!   commands, from a granted device to running queues and a durable stop.
//! * [`features`]: what the kernel offers and a device was granted, by name.
//! * [`request`]: what every data plane shares: a ublk descriptor as an
//!   engine request, an engine result as a completion.
//! * [`queue`]: the data plane: one thread per hardware queue turning ublk
//!   descriptors into engine requests.
//! * [`user_copy`]: moving request data with `UBLK_F_USER_COPY` (or a bounce
//!   buffer) between the request and the mapping.
//! * [`group_commit`]: how a write-through queue acknowledges writes in
//!   groups, one sync for all that finished before it.
//! * [`direct`]: the direct data plane (Linux 6.16+): request pages as
//!   io_uring fixed buffers, read and written `O_DIRECT` on the backing.
//! * [`batch`]: the batch data plane (Linux 7.0+): requests fetched and
//!   committed in groups, data through per-tag buffers.
//! * [`affinity`]: which CPUs the queue threads run on.

pub mod affinity;
pub mod batch;
pub mod control;
pub mod direct;
pub mod features;
pub mod group_commit;
pub mod queue;
pub mod request;
pub mod run;
pub mod user_copy;
