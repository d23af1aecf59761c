//! MCP tool call round trip for `read_board` on a 100,000-task project
//! (`cargo bench --bench mcp`; goal: p50 under 20 ms): an SDK client calls
//! the tool on an `McpServer` over an in-process pipe, the framing `mctl mcp`
//! uses on stdio. Each call checks the policy, loads the board (lanes with
//! full counts and the first 20 tasks of each), writes its audit entry and
//! answers JSON. Medians of three runs of 300 calls, after 20 to warm up.

#[path = "../tests/common/mcp.rs"]
mod mcp;
mod support;

use std::time::Instant;

use mission_control::domain::{AgentKind, Source};
use mission_control::mcp::policy::AgentPolicy;
use mission_control::store::Actor;
use mission_control::store::agents::NewAgent;
use serde_json::json;

const CALLS: usize = 300;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (store, project_id) = support::project_with_tasks("mctl_bench_mcp").await;
        let actor = Actor::new("bench", Source::Cli);
        let agent = NewAgent {
            handle: "bench-agent".into(),
            display_name: "Bench".into(),
            kind: AgentKind::Ai,
            capacity: Some(10),
            skills: vec![],
        };
        store.create_agent(&actor, agent).await.unwrap();
        let project = store.list_projects(false).await.unwrap().into_iter().find(|p| p.id == project_id).unwrap();
        let client = mcp::connect(&store, &project, "bench-agent", AgentPolicy::default()).await;

        for (name, args) in [("read_board", json!({})), ("read_board filtered by label", json!({"label": "security"}))]
        {
            for _ in 0..20 {
                mcp::answer(mcp::call(&client, "read_board", args.clone()).await);
            }
            let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                let mut times = Vec::with_capacity(CALLS);
                for _ in 0..CALLS {
                    let started = Instant::now();
                    let board = mcp::answer(mcp::call(&client, "read_board", args.clone()).await);
                    times.push(started.elapsed());
                    assert!(board["lanes"].as_array().is_some_and(|l| !l.is_empty()));
                }
                times.sort();
                p50s.push(support::percentile(&times, 0.50));
                p99s.push(support::percentile(&times, 0.99));
            }
            println!(
                "MCP {name} on {} tasks: p50 {}, p99 {} (medians of 3 x {CALLS} calls)",
                support::TASKS,
                support::ms(support::median(p50s), 2),
                support::ms(support::median(p99s), 2)
            );
        }
        client.cancel().await.unwrap();
    });
}
