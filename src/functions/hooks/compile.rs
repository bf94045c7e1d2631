//! A deploy's hooks as the manifest declares them, their `when` conditions compiled.

use serde_json::Value;

use super::DEFAULT_MAX_ATTEMPTS;
use crate::functions::bundle::Manifest;
use crate::rules::{AuthInfo, Bindings, ExprKind, Expression};
use crate::store::{ChangeOp, StoredDoc, now_ms};

/// An after hook of a deploy, its condition compiled.
pub struct CompiledHook {
    pub function: String,
    pub collection: String,
    pub ops: Vec<ChangeOp>,
    pub when: Option<Expression>,
    pub max_attempts: u32,
    /// After hooks declared with `batch`: the most events one invocation gets (as an array).
    pub batch: Option<usize>,
}

impl CompiledHook {
    /// Whether the `when` condition holds for a write (true without one).
    pub(crate) fn when_holds(
        &self,
        auth: Option<&AuthInfo>,
        id: &str,
        before: Option<&StoredDoc>,
        new: Option<&Value>,
    ) -> bool {
        let Some(when) = &self.when else {
            return true;
        };
        let meta = before.map(crate::documents::meta);
        when.evaluate(&Bindings {
            auth,
            id,
            doc: before.map(|d| &d.data),
            new,
            meta: meta.as_ref(),
            now_ms: now_ms(),
        })
    }
}

/// The hooks of one phase ("before" or "after"), in manifest order.
pub fn compile_hooks(m: &Manifest, phase: &str) -> Result<Vec<CompiledHook>, String> {
    m.hooks
        .iter()
        .filter(|h| h.phase == phase)
        .map(|h| {
            let when = match &h.when {
                Some(src) => Some(
                    Expression::compile(src, ExprKind::Condition)
                        .map_err(|e| format!("hook when: {}", e.message))?,
                ),
                None => None,
            };
            Ok(CompiledHook {
                function: h.function.clone(),
                collection: h.collection.clone(),
                ops: h
                    .on
                    .iter()
                    .filter_map(|o| match o.as_str() {
                        "create" => Some(ChangeOp::Create),
                        "update" => Some(ChangeOp::Update),
                        "delete" => Some(ChangeOp::Delete),
                        _ => None,
                    })
                    .collect(),
                when,
                max_attempts: h.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                batch: h.batch.map(|n| n as usize),
            })
        })
        .collect()
}
