//! meshplane's building blocks: the platform's configuration (`platform.yaml`) and the
//! storage blocks that provision contracts' servers in real stores.

pub mod platform;
