//! Barrier on windows.

use crate::{Exec, Result};

/// Returns once every member has called it: one post and one wait.
pub fn barrier(e: &mut dyn Exec) -> Result<()> {
    if e.members() == 1 {
        return Ok(());
    }
    let (_, v) = e.begin_round();
    e.post(v + 1)?;
    e.wait_all(v + 1)
}
