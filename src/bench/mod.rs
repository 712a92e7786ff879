//! `weir bench`: load generation against a broker and the machine's ceilings measured in the same
//! run (raw O_DIRECT write, fdatasync latency, loopback TCP).

pub mod ceilings;
