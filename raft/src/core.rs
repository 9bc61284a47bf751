//! The synchronous heart of a replica: raft-rs's `RawNode` over [`RaftLog`], and the
//! proposal bookkeeping around it. No I/O and no tasks: inputs (tick, step, propose,
//! "ready N is persisted", "entries were fetched", "applied up to i") go in, and
//! [`Core::ready`] hands back what to do (send, persist, apply). The glommio
//! [`crate::Replica`] does the doing, and so does the simulation, through the very same
//! replica code.
//!
//! Invariants:
//! - A proposal waiter is keyed by the index raft-rs gave its entry and remembers the
//!   term: at apply it succeeds only if the applied entry has that term (an entry at
//!   the same index and term is the same entry); otherwise it fails.
//! - Waiters fail at once when their entry is replaced, when this node stops being
//!   leader (the new leader may or may not keep the entry: unknown is an error, never
//!   SEND_OK), and when their deadline (in ticks, so the simulated clock governs it)
//!   passes.
//! - Messages raft-rs marks as needing persistence go out only after their Ready is
//!   persisted (`on_persisted`); the others at once.
//! - Proposals that arrive between two Readies become one entry (up to
//!   [`PROPOSAL_BATCH_MAX_BYTES`]): their records are concatenated in arrival order, and
//!   at apply each proposal gets back exactly its own records' places, in order. One
//!   entry per burst instead of one per send is what keeps the per-entry costs (index
//!   entry, raft-rs bookkeeping, protobuf framing, one persist call) off each message.
//!
//! Thread: the shard's executor.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Entry, HardState, Message, MessageType};
use raft::{RawNode, StateRole};
use rockshard_storage::AppendResult;

use crate::error::{Error, Result};
use crate::limits::{PROPOSALS_PENDING_MAX, PROPOSAL_BATCH_MAX_BYTES};
use crate::log::{LogMem, RaftLog};
use rockshard_local::oneshot;

/// A node's role in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// How the leader replicates to one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    /// Highest index known to be on the follower.
    pub matched: u64,
    /// Next index to send it.
    pub next_idx: u64,
    /// raft-rs's state: "probe" (finding where logs agree), "replicate" (pipelining),
    /// "snapshot" (never used here).
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub role: Role,
    /// Per follower, on the leader only.
    pub progress: Vec<PeerProgress>,
    /// Why the replica stopped, if it did.
    pub stopped: Option<String>,
}

/// Persistence work of one Ready, in Ready order.
pub struct Job {
    pub number: u64,
    /// The first index of a suffix the new entries replace.
    pub truncate_from: Option<u64>,
    /// (index, term, data) in index order.
    pub entries: Vec<(u64, u64, Bytes)>,
    pub hard_state: Option<HardState>,
}

/// What one Ready asks of the replica.
#[derive(Default)]
pub struct Output {
    /// To send now.
    pub messages: Vec<Message>,
    pub job: Option<Job>,
    /// Committed entries to apply, in order (all already persisted here).
    pub committed: Vec<Entry>,
    /// Leader, term or role changed.
    pub status_changed: Option<Status>,
}

/// One proposal inside an entry: how many records it brought, and who waits.
type Part = (usize, oneshot::Sender<Result<AppendResult>>);

struct Waiter {
    term: u64,
    deadline_tick: u64,
    result: Option<AppendResult>,
    parts: Vec<Part>,
}

impl Waiter {
    fn fail(self, e: Error) {
        for (_, tx) in self.parts {
            tx.send(Err(e.clone()));
        }
    }

    /// Hands each proposal its own records (they are in proposal order).
    fn succeed(self) {
        let result = self.result.unwrap_or(AppendResult { records: Vec::new(), store_timestamp_ms: 0 });
        if let [(_, _)] = self.parts.as_slice() {
            let (_, tx) = self.parts.into_iter().next().expect("one part");
            tx.send(Ok(result));
            return;
        }
        let mut records = result.records.into_iter();
        for (n, tx) in self.parts {
            let mine: Vec<_> = records.by_ref().take(n).collect();
            let store_timestamp_ms = result.store_timestamp_ms;
            tx.send(Ok(AppendResult { records: mine, store_timestamp_ms }));
        }
    }
}

/// Proposals gathered since the last Ready.
#[derive(Default)]
struct Batch {
    /// The first proposal's data, kept as it is while it is alone (no copy).
    first: Option<Bytes>,
    /// Everything gathered, once there is more than one proposal.
    joined: BytesMut,
    bytes: usize,
    parts: Vec<Part>,
}

pub struct Core {
    node: RawNode<RaftLog>,
    log: Rc<RefCell<LogMem>>,
    waiters: BTreeMap<u64, Waiter>,
    /// Leader proposals not yet handed to raft-rs (see the module's invariants).
    batch: Batch,
    /// Proposals waiting, in the batch and in entries.
    pending: usize,
    /// Messages to send once the Ready of that number is persisted.
    after_persist: VecDeque<(u64, Vec<Message>)>,
    ticks: u64,
    timeout_ticks: u64,
    timeout_ms: u64,
    seen: (Option<u64>, u64, Role),
}

impl Core {
    pub fn new(node: RawNode<RaftLog>, log: Rc<RefCell<LogMem>>, timeout_ms: u64, tick_ms: u64) -> Self {
        let seen = (None, node.raft.term, Role::from(node.raft.state));
        Core {
            node,
            log,
            waiters: BTreeMap::new(),
            batch: Batch::default(),
            pending: 0,
            after_persist: VecDeque::new(),
            ticks: 0,
            timeout_ticks: timeout_ms.div_ceil(tick_ms.max(1)).max(1),
            timeout_ms,
            seen,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn leader(&self) -> Option<u64> {
        let l = self.node.raft.leader_id;
        (l != raft::INVALID_ID).then_some(l)
    }

    pub fn tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        // Deadlines grow with the index (proposals arrive in time order), so the
        // expired ones are at the front.
        while let Some(entry) = self.waiters.first_entry() {
            if entry.get().deadline_tick > self.ticks {
                break;
            }
            let w = entry.remove();
            self.pending -= w.parts.len();
            w.fail(Error::Timeout { timeout_ms: self.timeout_ms });
        }
    }

    pub fn step(&mut self, msg: Message) {
        // A message from an unknown peer or of a local type is noise on the wire, not a
        // reason to stop: raft-rs refuses it and the replica carries on.
        if let Err(e) = self.node.step(msg) {
            tracing::debug!(error = %e, "raft message refused");
        }
    }

    /// Starts an election now (pre-vote first, so a group that has a live leader is not
    /// disturbed: its members refuse while they hear from that leader).
    pub fn campaign(&mut self) {
        if let Err(e) = self.node.campaign() {
            tracing::debug!(error = %e, "campaign refused");
        }
    }

    /// Hands leadership to `to` (a caught-up follower); a no-op unless this node leads.
    pub fn transfer_leader(&mut self, to: u64) {
        if self.is_leader() && to != self.node.raft.id {
            self.node.transfer_leader(to);
        }
    }

    fn propose_entry(&mut self, data: Bytes) -> Result<u64> {
        let before = self.node.raft.raft_log.last_index();
        let e = Entry { data, ..Default::default() };
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.node.raft.id;
        m.set_entries(vec![e].into());
        // Stepped as a message rather than through `RawNode::propose`, which takes a
        // Vec and would copy the data.
        self.node.raft.step(m).map_err(|e| match e {
            raft::Error::ProposalDropped => Error::Dropped("raft-rs dropped the proposal"),
            e => Error::from(e),
        })?;
        Ok(before)
    }

    /// Proposes `data` (stored-format records) on the leader; the receiver resolves when
    /// it is applied here. The data joins the entry the next Ready proposes.
    pub fn propose(&mut self, data: Bytes) -> Result<oneshot::Receiver<Result<AppendResult>>> {
        if !self.is_leader() {
            return Err(Error::NotLeader { leader: self.leader() });
        }
        if self.pending >= PROPOSALS_PENDING_MAX {
            return Err(Error::Busy { pending: self.pending, limit: PROPOSALS_PENDING_MAX });
        }
        if self.batch.bytes + data.len() > PROPOSAL_BATCH_MAX_BYTES && !self.batch.parts.is_empty() {
            self.flush_batch();
        }
        let records = count_records(&data);
        let (tx, rx) = oneshot::channel();
        let b = &mut self.batch;
        b.bytes += data.len();
        match (b.first.take(), b.parts.is_empty()) {
            (None, true) => b.first = Some(data),
            (first, _) => {
                if let Some(first) = first {
                    b.joined.reserve(first.len() + data.len());
                    b.joined.extend_from_slice(&first);
                }
                b.joined.extend_from_slice(&data);
            }
        }
        b.parts.push((records, tx));
        self.pending += 1;
        Ok(rx)
    }

    /// [`Core::propose`] into an entry of its own: what was gathered before goes first,
    /// and nothing later joins it.
    pub fn propose_alone(&mut self, data: Bytes) -> Result<oneshot::Receiver<Result<AppendResult>>> {
        self.flush_batch();
        let rx = self.propose(data)?;
        self.flush_batch();
        Ok(rx)
    }

    /// Hands the gathered proposals to raft-rs as one entry.
    fn flush_batch(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if batch.parts.is_empty() {
            return;
        }
        let data = match batch.first {
            Some(first) => first,
            None => batch.joined.freeze(),
        };
        let w = Waiter {
            term: self.node.raft.term,
            deadline_tick: self.ticks + self.timeout_ticks,
            result: None,
            parts: batch.parts,
        };
        if !self.is_leader() {
            self.pending -= w.parts.len();
            return w.fail(Error::Dropped("leadership lost before the proposal entered the log"));
        }
        let before = match self.propose_entry(data) {
            Ok(before) => before,
            Err(e) => {
                self.pending -= w.parts.len();
                return w.fail(e);
            }
        };
        let index = self.node.raft.raft_log.last_index();
        if index == before {
            self.pending -= w.parts.len();
            return w.fail(Error::Dropped("raft-rs did not append the proposal"));
        }
        self.waiters.insert(index, w);
    }

    /// Proposes on any node: a follower forwards to the leader. Nobody waits for it.
    pub fn propose_forwarded(&mut self, data: Bytes) -> Result<()> {
        self.propose_entry(data).map(|_| ())
    }

    /// The persister appended entry `index` of `term`; a waiter for it keeps the places.
    pub fn note_appended(&mut self, index: u64, term: u64, result: &AppendResult) {
        if let Some(w) = self.waiters.get_mut(&index) {
            if w.term == term {
                w.result = Some(result.clone());
            }
        }
    }

    fn fail_waiters_from(&mut self, from: u64, why: &'static str) {
        for (_, w) in self.waiters.split_off(&from) {
            self.pending -= w.parts.len();
            w.fail(Error::Dropped(why));
        }
    }

    /// Fails every waiter, gathered or in the log (the replica stops).
    pub fn fail_all(&mut self, err: &Error) {
        let batch = std::mem::take(&mut self.batch);
        for (_, tx) in batch.parts {
            tx.send(Err(err.clone()));
        }
        for (_, w) in std::mem::take(&mut self.waiters) {
            w.fail(err.clone());
        }
        self.pending = 0;
    }

    pub fn pending_proposals(&self) -> usize {
        self.pending
    }

    /// Takes the next Ready, if raft-rs has one, and turns it into work.
    pub fn ready(&mut self) -> Option<Output> {
        self.flush_batch();
        if !self.node.has_ready() {
            return None;
        }
        let mut rd = self.node.ready();
        assert!(rd.snapshot().is_empty(), "snapshots are never produced: the log is never compacted");
        let number = rd.number();
        let mut out =
            Output { messages: rd.take_messages(), committed: rd.take_committed_entries(), ..Default::default() };
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        let persisted = rd.take_persisted_messages();
        // raft-rs must be able to read the new entries back before advance_append_async.
        let truncate_from = self.log.borrow_mut().append_unstable(&entries);
        if let Some(from) = truncate_from {
            self.fail_waiters_from(from, "entry replaced by another leader's");
        }
        self.node.advance_append_async(rd);
        if !persisted.is_empty() {
            self.after_persist.push_back((number, persisted));
        }
        let entries = entries.into_iter().map(|e| (e.index, e.term, e.data)).collect();
        out.job = Some(Job { number, truncate_from, entries, hard_state });

        let now = (self.leader(), self.node.raft.term, Role::from(self.node.raft.state));
        if now != self.seen {
            if self.seen.2 == Role::Leader && now.2 != Role::Leader {
                // The next leader may keep or drop these entries; the caller must not
                // be told they were stored.
                for (_, w) in std::mem::take(&mut self.waiters) {
                    self.pending -= w.parts.len();
                    w.fail(Error::Dropped("leadership lost"));
                }
            }
            self.seen = now;
            out.status_changed = Some(self.status(None));
        }
        Some(out)
    }

    /// Ready `number` (and every earlier one) is durable. Returns the messages that
    /// waited for it.
    pub fn on_persisted(&mut self, number: u64) -> Vec<Message> {
        self.node.on_persist_ready(number);
        let mut msgs = Vec::new();
        while self.after_persist.front().is_some_and(|(n, _)| *n <= number) {
            msgs.extend(self.after_persist.pop_front().expect("checked").1);
        }
        msgs
    }

    pub fn on_entries_fetched(&mut self, ctx: raft::GetEntriesContext) {
        self.node.on_entries_fetched(ctx);
    }

    /// Entries up to `index` are applied (visible, hooks called): tell raft-rs, free the
    /// cache, resolve the waiters.
    pub fn applied_to(&mut self, index: u64) {
        self.node.advance_apply_to(index);
        self.log.borrow_mut().set_applied(index);
        let rest = self.waiters.split_off(&(index + 1));
        let done = std::mem::replace(&mut self.waiters, rest);
        let log = self.log.borrow();
        for (i, w) in done {
            self.pending -= w.parts.len();
            if log.term_of(i) != Some(w.term) {
                w.fail(Error::Dropped("entry replaced by another leader's"));
            } else {
                w.succeed();
            }
        }
    }

    pub fn status(&self, stopped: Option<String>) -> Status {
        let st = self.node.status();
        let mut progress = Vec::new();
        if let Some(prs) = st.progress {
            for (id, p) in prs.iter() {
                if *id == st.id {
                    continue;
                }
                let state = match p.state {
                    raft::ProgressState::Probe => "probe",
                    raft::ProgressState::Replicate => "replicate",
                    raft::ProgressState::Snapshot => "snapshot",
                };
                progress.push(PeerProgress { id: *id, matched: p.matched, next_idx: p.next_idx, state });
            }
            progress.sort_by_key(|p| p.id);
        }
        Status {
            id: st.id,
            leader: self.leader(),
            term: st.hs.term,
            commit: st.hs.commit,
            applied: self.log.borrow().applied(),
            last_index: self.node.raft.raft_log.last_index(),
            role: Role::from(st.ss.raft_state),
            progress,
            stopped,
        }
    }

    /// raft-rs's hard state now (term, vote, commit), persisted or not.
    pub fn hard_state(&self) -> HardState {
        self.node.raft.hard_state()
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }
}

/// Records in stored-format data (the proposer's own encoding, already validated).
fn count_records(data: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at + 4 <= data.len() {
        let size = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        if size == 0 {
            break;
        }
        at += size;
        n += 1;
    }
    n
}
