//! `skybridge whatif`: asks the federator where connections would go if some clusters went
//! down (`GET /api/v1/whatif`, which changes nothing) and prints the routes that move.

use std::fmt::Write as _;

use clap::Args;
use skybridge_federator::api::dto::{RouteOutcome, WhatIfResponse, WhatIfRoute};

use super::{Api, ApiArgs, ClientError, Output, block_on, decode, encode_query, pretty};

/// Arguments of `skybridge whatif`.
#[derive(Debug, Args)]
pub(crate) struct WhatIfArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Clusters to treat as gone, comma-separated (gcp-1,azure-1).
    #[arg(long)]
    pub down: String,
    /// Only this service (namespace/name).
    #[arg(long)]
    pub service: Option<String>,
    /// Only routes from this cluster's gateways.
    #[arg(long)]
    pub from: Option<String>,
    /// Same as `-o json` (kept for scripts written before `-o`).
    #[arg(long)]
    pub json: bool,
    /// Also list the routes that do not change.
    #[arg(long)]
    pub all: bool,
}

/// Runs the command: one request, then a table (or the JSON) on stdout.
pub(crate) fn run(args: &WhatIfArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let query = encode_query(&[
        ("down", Some(args.down.as_str())),
        ("service", args.service.as_deref()),
        ("from", args.from.as_deref()),
    ]);
    let path = format!("/api/v1/whatif?{query}");
    let body = block_on(api.get(&path))??;
    if args.json || args.api.output == Output::Json {
        println!("{}", pretty(&path, &body)?);
    } else {
        print!("{}", table(&decode::<WhatIfResponse>(&path, &body)?, args.all));
    }
    Ok(())
}

/// Where first tries go: one cluster, or the split (`aws-1 70% + gcp-1 30%`).
fn target(o: &RouteOutcome) -> String {
    match o.shares.as_slice() {
        [] => "unreachable".into(),
        [one] => one.cluster.clone(),
        many => many.iter().map(|s| format!("{} {:.0}%", s.cluster, s.share * 100.0)).collect::<Vec<_>>().join(" + "),
    }
}

fn rtt(o: &RouteOutcome) -> String {
    match o.expected_rtt_ms {
        _ if o.unreachable => "-".into(),
        Some(ms) => format!("{ms:.1} ms"),
        None => "? ms".into(),
    }
}

/// The answer as a table of the routes that move (every route with `all`), and a summary.
pub(crate) fn table(answer: &WhatIfResponse, all: bool) -> String {
    let rows: Vec<&WhatIfRoute> = answer.routes.iter().filter(|r| all || r.changed).collect();
    let mut cells =
        vec![["SERVICE".to_owned(), "FROM".into(), "ROUTE (before → after)".into(), "RTT (before → after)".into()]];
    cells.extend(rows.iter().map(|r| {
        [
            format!("{}/{}", r.namespace, r.name),
            r.from.clone(),
            format!("{} → {}", target(&r.before), target(&r.after)),
            format!("{} → {}", rtt(&r.before), rtt(&r.after)),
        ]
    }));
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let s = &answer.summary;
    let mut out = format!("If {} went down:\n", answer.down.join(", "));
    if rows.is_empty() {
        let _ = writeln!(out, "  no route changes ({} routes compared)", s.routes);
    } else {
        for c in &cells {
            let _ = writeln!(
                out,
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "routes changing: {} of {}; services affected: {}; services left with no route from some cluster: {}",
        s.routes_changed, s.routes, s.services_affected, s.services_unreachable
    );
    let hidden = answer.routes.len() - rows.len();
    if hidden > 0 {
        let _ = writeln!(out, "({hidden} unchanged routes not shown; --all lists them.)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skybridge_federator::api::dto::{RouteShare, WhatIfSummary};

    fn outcome(shares: &[(&str, f64)], rtt: Option<f64>) -> RouteOutcome {
        RouteOutcome {
            preferred: shares.first().map(|s| s.0.to_owned()),
            shares: shares.iter().map(|(c, s)| RouteShare { cluster: (*c).into(), share: *s }).collect(),
            expected_rtt_ms: rtt,
            unreachable: shares.is_empty(),
        }
    }

    fn route(name: &str, from: &str, before: RouteOutcome, after: RouteOutcome) -> WhatIfRoute {
        let changed = before.shares != after.shares;
        WhatIfRoute { namespace: "prod".into(), name: name.into(), from: from.into(), before, after, changed }
    }

    fn answer() -> WhatIfResponse {
        WhatIfResponse {
            down: vec!["gcp-1".into()],
            summary: WhatIfSummary { routes: 3, routes_changed: 2, services_affected: 2, services_unreachable: 1 },
            routes: vec![
                route("db", "aws-1", outcome(&[("gcp-1", 1.0)], Some(12.0)), outcome(&[], None)),
                route(
                    "payments",
                    "aws-1",
                    outcome(&[("gcp-1", 0.5), ("azure-1", 0.5)], Some(20.25)),
                    outcome(&[("azure-1", 1.0)], None),
                ),
                route("web", "aws-1", outcome(&[("aws-1", 1.0)], Some(0.0)), outcome(&[("aws-1", 1.0)], Some(0.0))),
            ],
        }
    }

    #[test]
    fn table_lists_the_routes_that_move() {
        let want = "\
If gcp-1 went down:
  SERVICE        FROM   ROUTE (before → after)             RTT (before → after)
  prod/db        aws-1  gcp-1 → unreachable                12.0 ms → -
  prod/payments  aws-1  gcp-1 50% + azure-1 50% → azure-1  20.2 ms → ? ms

routes changing: 2 of 3; services affected: 2; services left with no route from some cluster: 1
(1 unchanged routes not shown; --all lists them.)
";
        assert_eq!(table(&answer(), false), want);
        let all = table(&answer(), true);
        assert!(all.contains("  prod/web       aws-1  aws-1 → aws-1"), "{all}");
        assert!(!all.contains("not shown"), "{all}");
    }

    #[test]
    fn table_says_when_nothing_moves() {
        let mut a = answer();
        a.routes.retain(|r| !r.changed);
        a.summary = WhatIfSummary { routes: 1, ..Default::default() };
        assert!(table(&a, false).starts_with("If gcp-1 went down:\n  no route changes (1 routes compared)\n"));
    }
}
