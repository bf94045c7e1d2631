//! Lists: the read plan (the read rule ANDed with the filter, `read_plan`), in SQL, one
//! page at a time, and the database's plan for the same query.

use crate::names::CollectionName;
use crate::rules::{Predicate, RuleSet};
use crate::store::{After, ListQuery, OrderKey};
use crate::tenancy::Scope;

use super::{
    Count, CursorContext, DocError, DocumentService, ListParams, MAX_COUNT, MAX_PAGE_BYTES, Page,
    ReadFor, parse_order,
};

/// A list request, checked and translated: what the store is asked for.
struct Planned {
    predicate: Option<Predicate>,
    order: Vec<OrderKey>,
    after: Option<After>,
    limit: i64,
    sort_matches: bool,
}

impl DocumentService {
    /// One page of a collection: the read rule ANDed with the filter, in SQL.
    pub async fn list(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        params: ListParams,
    ) -> Result<Page, DocError> {
        let order_src = params.order.as_deref().unwrap_or("");
        let filter_src = params.filter.as_deref().unwrap_or("").trim();
        let ctx = CursorContext {
            tenant_id: scope.tenant().id,
            collection: collection.as_str(),
            order: order_src,
            filter: filter_src,
        };
        let plan = self.plan_list(scope, collection, &params, &ctx).await?;
        let mut rows = self
            .store
            .list_documents(scope, query(collection.as_str(), &plan))
            .await?;
        let keep = crate::store::page_len(&rows, plan.limit as usize, MAX_PAGE_BYTES);
        let next_cursor = if rows.len() > keep {
            rows.truncate(keep);
            rows.last().map(|r| {
                self.cursor_key.encode(
                    &ctx,
                    &After {
                        keys: r.keys.clone(),
                        tie: r.tie.clone(),
                    },
                )
            })
        } else {
            None
        };
        let count = if params.count {
            let n = self
                .store
                .count_documents(
                    scope,
                    collection.as_str(),
                    plan.predicate.as_ref(),
                    MAX_COUNT,
                )
                .await?;
            Some(Count {
                count: n.min(MAX_COUNT),
                capped: n > MAX_COUNT,
            })
        } else {
            None
        };
        Ok(Page {
            items: rows,
            next_cursor,
            count,
        })
    }

    /// The database's plan for the SQL that `list` runs for the same request, one line
    /// per step. Tests and diagnostics call it with a name as text, so it parses its own.
    pub async fn explain_list(
        &self,
        scope: &Scope,
        collection: &str,
        params: ListParams,
    ) -> Result<Vec<String>, DocError> {
        let collection = &CollectionName::parse(collection)?;
        let ctx = CursorContext {
            tenant_id: scope.tenant().id,
            collection: collection.as_str(),
            order: params.order.as_deref().unwrap_or(""),
            filter: params.filter.as_deref().unwrap_or("").trim(),
        };
        let plan = self.plan_list(scope, collection, &params, &ctx).await?;
        Ok(self
            .store
            .explain_list(scope, query(collection.as_str(), &plan))
            .await?)
    }

    async fn plan_list(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        params: &ListParams,
        ctx: &CursorContext<'_>,
    ) -> Result<Planned, DocError> {
        let limit = params.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(DocError::InvalidParam {
                param: "limit",
                message: "must be between 1 and 1000".into(),
            });
        }
        let order = parse_order(ctx.order)?;
        let plan = self
            .read_plan(scope, collection, Some(ctx.filter), None, ReadFor::List)
            .await?;
        let predicate = plan.predicate;
        let after = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(
                self.cursor_key
                    .decode(ctx, c)
                    .ok_or(DocError::InvalidCursor)?,
            ),
            None => None,
        };
        if let Some(a) = &after
            && a.keys.len() != order.len()
        {
            return Err(DocError::InvalidCursor);
        }
        let sort_matches =
            sort_matches(&plan.rules, collection.as_str(), predicate.as_ref(), &order);
        Ok(Planned {
            predicate,
            order,
            after,
            limit,
            sort_matches,
        })
    }
}

fn query<'a>(collection: &'a str, plan: &'a Planned) -> ListQuery<'a> {
    ListQuery {
        collection,
        predicate: plan.predicate.as_ref(),
        order: &plan.order,
        after: plan.after.as_ref(),
        limit: plan.limit + 1,
        max_bytes: MAX_PAGE_BYTES,
        sort_matches: plan.sort_matches,
    }
}

/// Whether a list in the default order should read its matches from a declared index
/// and sort them, rather than walk the `created_at` index: some declared index narrows
/// the predicate (its first path is compared with `==`, `in`, a range or a prefix at the
/// top level) but none delivers the default order for it (that takes equality on all of
/// an index's paths). Planners without statistics on the data otherwise walk
/// `created_at` and skip every row that does not match, however few do.
fn sort_matches(
    rules: &RuleSet,
    collection: &str,
    predicate: Option<&Predicate>,
    order: &[OrderKey],
) -> bool {
    let default_order = matches!(order, [k] if k.field == crate::query::OrderField::CreatedAt);
    match predicate {
        Some(p) if default_order => p.needs_index_sort(rules.indexes(collection)),
        _ => false,
    }
}
