//! `:plan` and `:shard`: how the open model splits over the nodes, and
//! applying that split. With no nodes, `single` means this process.

use std::time::Instant;

use shardlab_engine::cluster::coordinator::{LoadProgress, ModelToLoad};
use shardlab_engine::cluster::messages::LocalModel;
use shardlab_engine::metrics::memory::system_memory_bytes;
use shardlab_engine::model::loader::{self, OpenedModel};
use shardlab_engine::model::weights::GgufSource;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, NodeBudget, Plan};

use super::{Runner, Session, SessionError, Sink};
use crate::output::text::{bytes, duration};
use crate::output::{Output, Rich, Table, Varies};

/// What the in-process "node" is called in plans.
const THIS_PROCESS: &str = "this process";

impl Session {
    /// The nodes a plan is made over: the live cluster nodes, or this
    /// process (with its free memory as budget) when none are connected.
    fn budgets(&self, request: &LayoutRequest) -> Result<Vec<NodeBudget>, SessionError> {
        match &self.nodes {
            Some(n) => Ok(n.cluster.budgets()),
            None if *request == LayoutRequest::Single => Ok(vec![NodeBudget {
                name: THIS_PROCESS.into(),
                budget_bytes: system_memory_bytes().map_or(u64::MAX, |(_, free)| free),
            }]),
            None => Err(SessionError::state(format!(
                "{request} needs nodes: `:connect local 2` starts two here (or use `single` for this process)"
            ))),
        }
    }

    fn make_plan(&self, request: &LayoutRequest) -> Result<(Plan, Vec<NodeBudget>), SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let summary = m.summary.as_ref().ok_or_else(|| {
            SessionError::state(format!(
                "{} is a Hugging Face directory; planning and sharding take GGUF files for now (it runs in this process)",
                m.name
            ))
        })?;
        let budgets = self.budgets(request)?;
        let p = plan(summary, &budgets, request, self.context(&m.config))?;
        Ok((p, budgets))
    }

    pub(super) fn plan(&mut self, request: &LayoutRequest) -> Result<Output, SessionError> {
        let (p, budgets) = self.make_plan(request)?;
        let table = self.plan_table(&p);
        let verdict = match self.fits(&p, &budgets) {
            Ok(()) => Output::text("fits: every node's prediction is within its budget"),
            Err(e) => {
                Output::Text(Rich::from(":shard would refuse: ").append(self.mask(&e.to_string())))
            }
        };
        Ok(Output::Table(table).then(verdict))
    }

    fn fits(&self, p: &Plan, budgets: &[NodeBudget]) -> Result<(), SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let summary = m.summary.as_ref().ok_or(SessionError::NoModel)?;
        Ok(check_fits(summary, p, budgets)?)
    }

    fn plan_table(&self, p: &Plan) -> Table {
        let lits = self.literals();
        let mut t = Table::new(&[
            "node",
            "stage/rank",
            "layers",
            "Q heads",
            "KV heads",
            "FFN cols",
            "vocab",
            "weights",
            "KV cache",
            "other",
            "predicted",
            "budget",
        ])
        .titled(format!(
            "plan: {} over {} node{}, context {} tokens",
            p.request,
            p.nodes.len(),
            if p.nodes.len() == 1 { "" } else { "s" },
            p.context
        ));
        let config = self.model.as_ref().map(|m| &m.config);
        for np in &p.nodes {
            let l = &np.layout;
            let kv = config.map_or(0..0, |c| l.kv_heads(c));
            let short_name = np.name.split(' ').next().unwrap_or_default();
            let fixed = self
                .nodes
                .as_ref()
                .is_some_and(|n| n.budget_is_fixed(short_name));
            let m = &np.memory;
            t.row(vec![
                Rich::masking(&np.name, &lits),
                format!("{}/{}", np.stage, np.rank).into(),
                range(&l.layers).into(),
                range(&l.q_heads).into(),
                range(&kv).into(),
                range(&l.ffn).into(),
                range(&l.vocab).into(),
                bytes(m.weights).into(),
                bytes(m.kv_cache).into(),
                bytes(m.scratch + m.overhead).into(),
                bytes(m.total()).into(),
                if fixed || np.budget_bytes == u64::MAX {
                    bytes(np.budget_bytes).into()
                } else {
                    Rich::varies(Varies::Bytes, bytes(np.budget_bytes))
                },
            ]);
        }
        t.note("other = prefill scratch + runtime; stage/rank = pipeline stage and place in its tensor group (all-reduce order)");
        t
    }

    pub(super) fn shard(
        &mut self,
        request: &LayoutRequest,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        if self.model.is_none() {
            return Err(SessionError::NoModel);
        }
        let mut out = Output::Empty;
        let lits = self.literals();
        if let Some(n) = self.nodes.as_mut() {
            for gone in n.cluster.remove_failed() {
                out = out.then(Output::Text(
                    Rich::from("dropped ").append(Rich::masking(&gone, &lits)),
                ));
            }
            if n.cluster.nodes().is_empty() {
                self.nodes = None;
                self.runner = Runner::Idle;
                return Err(SessionError::state(
                    "no nodes survive: `:connect` again, or `:disconnect` and run in this process",
                ));
            }
        }
        let (p, budgets) = self.make_plan(request)?;
        let table = self.plan_table(&p);
        self.fits(&p, &budgets)?;
        self.unload_runner();
        let started = Instant::now();
        let done = if self.nodes.is_some() {
            self.load_on_cluster(&p, sink)?
        } else {
            self.load_in_process(sink)?
        };
        if self.nodes.is_some() {
            self.runner = Runner::Cluster(request.clone());
        }
        let line = Rich::from(format!("sharded {request} over {} ", p.nodes.len()))
            .push(if p.nodes.len() == 1 { "node" } else { "nodes" })
            .push(" in ")
            .push_varies(Varies::Time, duration(started.elapsed().as_secs_f64()))
            .append(done);
        Ok(out.then(Output::Table(table)).then(Output::Text(line)))
    }

    /// Streams each node its slices; returns what the nodes reported.
    fn load_on_cluster(&mut self, p: &Plan, sink: &mut dyn Sink) -> Result<Rich, SessionError> {
        let (Some(m), Some(n)) = (self.model.as_ref(), self.nodes.as_mut()) else {
            return Err(SessionError::NoModel);
        };
        let (OpenedModel::Gguf(file), Some(summary)) = (&m.opened, &m.summary) else {
            return Err(SessionError::state("sharding takes GGUF files for now"));
        };
        let model = ModelToLoad {
            name: m.name.clone(),
            config: &summary.config,
            source: &GgufSource { file },
            file: Some(LocalModel::describe(&m.path, m.file_bytes)),
        };
        let quiet = |_: LoadProgress| {};
        let progress = sink.load_progress().unwrap_or(&quiet);
        n.cluster.wire = self.settings.wire;
        let summary = n.cluster.load(&model, p, progress)?;
        let cached = summary.nodes.iter().filter(|(_, r)| r.from_cache).count();
        // Whether a node had its shard cached depends on earlier runs.
        Ok(Rich::from(" (streamed ")
            .push_varies(Varies::Bytes, bytes(summary.bytes_sent))
            .push("; ")
            .push_varies(Varies::Int, cached.to_string())
            .push(format!(
                " of {} nodes had the shard cached)",
                summary.nodes.len()
            )))
    }

    fn load_in_process(&mut self, sink: &mut dyn Sink) -> Result<Rich, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        sink.note(&Rich::from(format!("loading {} into this process", m.name)));
        let loaded = loader::load(&m.source, self.context(&m.config))?;
        self.runner = Runner::InProcess(Box::new(loaded.transformer));
        Ok(Rich::from(" (this process)"))
    }
}

/// "0..6", or "-" for an empty range.
fn range(r: &std::ops::Range<usize>) -> String {
    if r.is_empty() {
        "-".into()
    } else {
        format!("{}..{}", r.start, r.end)
    }
}
