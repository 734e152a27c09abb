//! The remote-executor seam of the search loop, with an in-process executor: every trial goes
//! through a JSON trial spec and `executor::run_trial` (what `nas eval` runs), results come
//! back out of order, and the history is the local one; tickets land in the checkpoint.

use nas_search::executor::{
    RemoteEvent, RemoteExecutor, RemoteHandle, RemoteJob, SPEC_FORMAT, SetupSpec, SpecTemplate,
    TrialOutcome, TrialSpec, run_trial,
};
use nas_search::search::{Budget, SearchConfig, read_state_value, run_search};
use nas_search::spaces::Registry;
use nas_search::strategy::StrategyKind;
use nas_search::{Result, builder::Search};
use nas_space::nb201::{Nb201Cell, Nb201Space};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Holds the trials it is given and finishes the newest first, through a spec file's JSON.
struct Lifo {
    template: SpecTemplate,
    held: Vec<RemoteJob>,
    events: VecDeque<RemoteEvent>,
    submitted: u64,
    /// The search's journal: each trial's ticket must be saved there before it finishes.
    journal: std::path::PathBuf,
    tickets_seen: u64,
}

impl RemoteExecutor for Lifo {
    fn submit(&mut self, job: RemoteJob) -> Result<()> {
        self.submitted += 1;
        self.events.push_back(RemoteEvent::Submitted {
            id: job.id,
            ticket: format!("lifo-{}", job.id),
        });
        self.held.push(job);
        Ok(())
    }
    fn next_event(&mut self) -> Result<RemoteEvent> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        let job = self.held.pop().expect("a job in flight");
        let saved = std::fs::read_to_string(&self.journal).unwrap_or_default();
        if saved.contains(&format!("\"ticket\":\"lifo-{}\"", job.id)) {
            self.tickets_seen += 1;
        }
        let spec = TrialSpec {
            format: SPEC_FORMAT.into(),
            template: self.template.clone(),
            evaluator_id: job.evaluator_id,
            trial: job.id,
            arch: job.arch,
            fidelity: job.fidelity,
            seed: job.seed,
        };
        let text = serde_json::to_string(&spec).unwrap();
        let spec: TrialSpec = serde_json::from_str(&text).unwrap();
        Ok(match run_trial(&Registry::builtin(), &spec)? {
            TrialOutcome::Finished(finished) => RemoteEvent::Done {
                id: job.id,
                finished,
            },
            TrialOutcome::Fatal(reason) => RemoteEvent::Fatal { id: job.id, reason },
        })
    }
}

#[test]
fn a_remote_executor_gives_the_local_history() {
    let reg = Registry::builtin();
    let space = reg.space("nb201").unwrap();
    let search = Search::new().table("cifar10", 12);
    let def = reg.evaluator("nb201-table").unwrap();
    let evaluator = def
        .build(space, search.setup())
        .unwrap()
        .get::<Nb201Cell>()
        .unwrap();
    let kind = StrategyKind::parse("rea:population_size=5").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = SearchConfig::new(11, Budget::evaluations(24));
    config.workers = 4;
    let local = run_search(
        &Nb201Space,
        kind.build(&Nb201Space).unwrap().as_mut(),
        &*evaluator,
        &config,
    )
    .unwrap();
    let lifo = Arc::new(Mutex::new(Lifo {
        template: SpecTemplate {
            space: "nb201".into(),
            evaluator: "nb201-table".into(),
            setup: SetupSpec::of(search.setup()),
        },
        held: Vec::new(),
        events: VecDeque::new(),
        submitted: 0,
        journal: dir.path().join("checkpoint.journal"),
        tickets_seen: 0,
    }));
    config.executor = Some(RemoteHandle(lifo.clone()));
    config.checkpoint = Some(dir.path().join("checkpoint.json"));
    let remote = run_search(
        &Nb201Space,
        kind.build(&Nb201Space).unwrap().as_mut(),
        &*evaluator,
        &config,
    )
    .unwrap();
    assert_eq!(local.history.len(), 24);
    assert!(remote.history.same_except_timing(&local.history));
    assert_eq!(lifo.lock().unwrap().submitted, 24);
    assert!(evaluator.name().starts_with("nb201-table/"));
    // Every trial's ticket was in the checkpoint's journal before the trial finished (the
    // journal starts over at each snapshot; one per search start here, so all 24 are seen).
    assert_eq!(lifo.lock().unwrap().tickets_seen, 24);
    assert!(read_state_value(&dir.path().join("checkpoint.json")).is_ok());
}
