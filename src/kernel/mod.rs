//! Hand-written CPU ops with their own backward passes.
