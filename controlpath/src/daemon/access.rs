//! The management service's way into the running engine: [`ControlAccess`] implements
//! [`EngineAccess`] over the engine's lock. A call runs on the control path under the lock,
//! then its downcalls are moved to the workers' rings (those a full ring refused wait in
//! order in the worker's queue, and the control-path task is woken to retry them) before the
//! reply goes out. Statistics come from what the workers last published, without touching
//! them.

use std::sync::Arc;

use dve_fp_api::stats::FpStatistics;

use super::control::SharedEngine;
use super::worker::StatisticsBoard;
use crate::ControlPath;
use crate::management::EngineAccess;

/// The engine as the management service sees it.
#[derive(Debug, Clone)]
pub struct ControlAccess {
    engine: SharedEngine,
    board: Arc<StatisticsBoard>,
}

impl ControlAccess {
    /// Access to `engine`, with the workers' statistics from `board`.
    pub fn new(engine: SharedEngine, board: Arc<StatisticsBoard>) -> ControlAccess {
        ControlAccess { engine, board }
    }
}

impl EngineAccess for ControlAccess {
    fn with_control<R>(&self, f: impl FnOnce(&mut ControlPath) -> R) -> R {
        self.engine.with_control(f)
    }

    fn worker_statistics(&self) -> Vec<FpStatistics> {
        self.board.snapshot()
    }
}
