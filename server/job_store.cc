#include "server/job_store.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "server/job_state.h"

namespace squeeze::server {
namespace {

using google::protobuf::util::TimeUtil;

// Each entry upgrades the schema by one version (PRAGMA user_version). Never
// edit a shipped entry; append a new one.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE jobs(
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL UNIQUE,
      tenant TEXT NOT NULL,
      state INTEGER NOT NULL,
      priority INTEGER NOT NULL,
      spec BLOB NOT NULL,
      idempotency_key TEXT,
      estimated_memory_bytes INTEGER NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      max_attempts INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      started_us INTEGER NOT NULL DEFAULT 0,
      finished_us INTEGER NOT NULL DEFAULT 0,
      queued_since_us INTEGER NOT NULL,
      queue_us INTEGER NOT NULL DEFAULT 0,
      run_us INTEGER NOT NULL DEFAULT 0,
      not_before_us INTEGER NOT NULL DEFAULT 0,
      lease_owner TEXT,
      lease_expires_us INTEGER NOT NULL DEFAULT 0,
      progress BLOB,
      error BLOB,
      variants BLOB,
      cancel_requested INTEGER NOT NULL DEFAULT 0,
      worker TEXT
    );
    CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs(tenant, idempotency_key)
      WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_queue ON jobs(state, priority, tenant, seq);
    CREATE INDEX jobs_by_tenant ON jobs(tenant, seq);
    CREATE INDEX jobs_by_lease ON jobs(state, lease_expires_us);
    CREATE TABLE job_labels(
      job_seq INTEGER NOT NULL REFERENCES jobs(seq),
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY(job_seq, key)
    ) WITHOUT ROWID;
    CREATE INDEX job_labels_by_value ON job_labels(key, value, job_seq);
    CREATE TABLE blobs(
      tenant TEXT NOT NULL,
      sha256 TEXT NOT NULL,
      size_bytes INTEGER NOT NULL,
      kind INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      PRIMARY KEY(tenant, sha256)
    ) WITHOUT ROWID;
    )sql",
    // Version 2: search trials, so that a retried attempt resumes.
    R"sql(
    CREATE TABLE trials(
      job_seq INTEGER NOT NULL REFERENCES jobs(seq),
      device TEXT NOT NULL,
      trial INTEGER NOT NULL,
      record BLOB NOT NULL,
      PRIMARY KEY(job_seq, device, trial)
    ) WITHOUT ROWID;
    )sql",
};

constexpr char kJobColumns[] =
    "seq, id, tenant, state, spec, attempts, created_us, started_us, finished_us, "
    "queued_since_us, queue_us, run_us, progress, error, variants, cancel_requested, "
    "worker";

// Largest batch one group commit takes; the rest wait for the next.
constexpr size_t kMaxBatch = 512;

int64_t WallClockMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewJobId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  return absl::StrFormat("j-%016x", rng());
}

// Builds a Job from a row selected with kJobColumns.
v1::Job JobFromRow(const Statement& row, int64_t now) {
  v1::Job job;
  job.set_id(row.ColumnText(1));
  job.set_tenant(row.ColumnText(2));
  job.set_state(static_cast<v1::JobState>(row.ColumnInt(3)));
  job.mutable_spec()->ParseFromString(row.ColumnBlob(4));
  job.set_attempts(static_cast<int>(row.ColumnInt(5)));
  *job.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(row.ColumnInt(6));
  int64_t started = row.ColumnInt(7);
  int64_t finished = row.ColumnInt(8);
  if (started > 0) *job.mutable_started_at() = TimeUtil::MicrosecondsToTimestamp(started);
  if (finished > 0) *job.mutable_finished_at() = TimeUtil::MicrosecondsToTimestamp(finished);
  int64_t queue_us = row.ColumnInt(10);
  int64_t run_us = row.ColumnInt(11);
  if (job.state() == v1::QUEUED) queue_us += now - row.ColumnInt(9);
  if (job.state() == v1::RUNNING) run_us += now - started;
  job.set_queue_seconds(queue_us / 1e6);
  job.set_run_seconds(run_us / 1e6);
  if (!row.ColumnIsNull(12)) job.mutable_progress()->ParseFromString(row.ColumnBlob(12));
  if (!row.ColumnIsNull(13)) job.mutable_error()->ParseFromString(row.ColumnBlob(13));
  if (!row.ColumnIsNull(14)) {
    v1::Job with_variants;
    with_variants.ParseFromString(row.ColumnBlob(14));
    job.mutable_variants()->Swap(with_variants.mutable_variants());
  }
  job.set_cancel_requested(row.ColumnInt(15) != 0);
  job.set_worker(row.ColumnText(16));
  return job;
}

absl::StatusOr<v1::Job> SelectJobBySeq(Database& db, int64_t seq, int64_t now) {
  SQ_ASSIGN_OR_RETURN(Statement * stmt,
                      db.Prepare(absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE seq=?")));
  stmt->Bind(1, seq);
  SQ_ASSIGN_OR_RETURN(bool found, stmt->Step());
  if (!found) return absl::InternalError(absl::StrCat("job row ", seq, " vanished"));
  return JobFromRow(*stmt, now);
}

// The row facts every transition needs.
struct JobRow {
  int64_t seq = 0;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  int attempts = 0;
  int max_attempts = 0;
  int64_t started_us = 0;
  int64_t queued_since_us = 0;
  std::string lease_owner;
};

absl::StatusOr<std::optional<JobRow>> SelectJobRow(Database& db, const std::string& where,
                                                   const std::function<void(Statement*)>& bind) {
  SQ_ASSIGN_OR_RETURN(Statement * stmt,
                      db.Prepare(absl::StrCat("SELECT seq, state, attempts, max_attempts, "
                                              "started_us, queued_since_us, lease_owner "
                                              "FROM jobs WHERE ",
                                              where)));
  bind(stmt);
  SQ_ASSIGN_OR_RETURN(bool found, stmt->Step());
  if (!found) return std::nullopt;
  JobRow row;
  row.seq = stmt->ColumnInt(0);
  row.state = static_cast<v1::JobState>(stmt->ColumnInt(1));
  row.attempts = static_cast<int>(stmt->ColumnInt(2));
  row.max_attempts = static_cast<int>(stmt->ColumnInt(3));
  row.started_us = stmt->ColumnInt(4);
  row.queued_since_us = stmt->ColumnInt(5);
  row.lease_owner = stmt->ColumnText(6);
  return row;
}

absl::Status CheckTransition(const std::string& id, v1::JobState from, v1::JobState to) {
  if (IsAllowedTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", JobStateName(from),
                                                    "; it cannot become ", JobStateName(to)));
}

// A worker call must come from the worker holding this attempt's lease.
absl::Status CheckLeaseHolder(const std::string& id, const std::optional<JobRow>& row,
                              const std::string& worker_id, int attempt) {
  if (!row) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  if (row->attempts != attempt || row->lease_owner != worker_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " does not hold attempt ", attempt, " of job ", id,
                     " (job is ", JobStateName(row->state), ", attempt ", row->attempts, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t RetryPolicy::BackoffMicros(int attempt) const {
  int64_t backoff = base_backoff_micros;
  for (int i = 1; i < attempt && backoff < max_backoff_micros; ++i) backoff *= 2;
  return std::min(backoff, max_backoff_micros);
}

// A read connection borrowed from the pool; returned on destruction.
class JobStore::ReadConnection {
 public:
  ReadConnection(JobStore* store, std::unique_ptr<Database> db)
      : store_(store), db_(std::move(db)) {}
  ReadConnection(ReadConnection&& other) = default;
  ~ReadConnection() {
    if (db_ == nullptr) return;
    db_->ResetAll();
    std::lock_guard<std::mutex> lock(store_->read_mu_);
    store_->idle_readers_.push_back(std::move(db_));
  }
  Database& operator*() { return *db_; }

 private:
  JobStore* store_;
  std::unique_ptr<Database> db_;
};

struct JobStore::PendingWrite {
  WriteFn fn;
  absl::Status status;
  bool done = false;
  std::condition_variable cv;
};

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(JobStoreOptions options) {
  if (!options.now_micros) options.now_micros = WallClockMicros;
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<Database> writer, Database::Open(options.path));
  std::unique_ptr<JobStore> store(new JobStore(std::move(options), std::move(writer)));
  SQ_RETURN_IF_ERROR(store->Migrate());
  return store;
}

JobStore::JobStore(JobStoreOptions options, std::unique_ptr<Database> writer)
    : options_(std::move(options)), writer_(std::move(writer)) {}

JobStore::~JobStore() = default;

absl::Status JobStore::Migrate() {
  SQ_ASSIGN_OR_RETURN(Statement * stmt, writer_->Prepare("PRAGMA user_version"));
  SQ_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
  int64_t version = has_row ? stmt->ColumnInt(0) : 0;
  stmt->Reset();
  constexpr int64_t kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);
  if (version > kLatest) {
    return absl::FailedPreconditionError(
        absl::StrCat("job store schema version ", version, " is newer than this daemon (",
                     kLatest, "); refusing to open it"));
  }
  for (; version < kLatest; ++version) {
    SQ_RETURN_IF_ERROR(writer_->Exec("BEGIN IMMEDIATE"));
    absl::Status status = writer_->Exec(kMigrations[version]);
    if (status.ok()) status = writer_->Exec(absl::StrCat("PRAGMA user_version=", version + 1));
    if (!status.ok()) {
      writer_->Exec("ROLLBACK").IgnoreError();
      return absl::Status(status.code(),
                          absl::StrCat("migration ", version + 1, ": ", status.message()));
    }
    SQ_RETURN_IF_ERROR(writer_->Exec("COMMIT"));
  }
  return absl::OkStatus();
}

absl::Status JobStore::Write(WriteFn fn) {
  PendingWrite self;
  self.fn = std::move(fn);
  std::unique_lock<std::mutex> lock(write_mu_);
  write_queue_.push_back(&self);
  while (!self.done && &self != write_queue_.front()) self.cv.wait(lock);
  if (self.done) return self.status;

  // This writer leads: it commits everything queued so far in one transaction.
  std::vector<PendingWrite*> batch;
  for (PendingWrite* w : write_queue_) {
    if (batch.size() == kMaxBatch) break;
    batch.push_back(w);
  }
  lock.unlock();

  std::vector<TransitionEvent> events;
  absl::Status commit = writer_->Exec("BEGIN IMMEDIATE");
  if (commit.ok()) {
    for (PendingWrite* w : batch) {
      size_t mark = events.size();
      w->status = writer_->Exec("SAVEPOINT write");
      if (w->status.ok()) w->status = w->fn(*writer_, &events);
      writer_->ResetAll();
      if (w->status.ok()) {
        w->status = writer_->Exec("RELEASE write");
      } else {
        events.resize(mark);
        writer_->Exec("ROLLBACK TO write").IgnoreError();
        writer_->Exec("RELEASE write").IgnoreError();
      }
    }
    commit = writer_->Exec("COMMIT");
    if (!commit.ok()) writer_->Exec("ROLLBACK").IgnoreError();
  }
  if (commit.ok()) {
    // Listeners (metrics) first, so that a watcher woken below already finds
    // the transition recorded; a GetJob that reads the committed row in
    // between can still be ahead of them.
    if (options_.on_transition) {
      for (const TransitionEvent& event : events) options_.on_transition(event);
    }
    {
      std::lock_guard<std::mutex> version_lock(version_mu_);
      ++version_;
    }
    version_cv_.notify_all();
  }

  lock.lock();
  for (PendingWrite* w : batch) {
    if (!commit.ok()) w->status = commit;
    w->done = true;
    write_queue_.pop_front();
    if (w != &self) w->cv.notify_one();
  }
  if (!write_queue_.empty()) write_queue_.front()->cv.notify_one();
  return self.status;
}

absl::StatusOr<JobStore::ReadConnection> JobStore::Read() {
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    if (!idle_readers_.empty()) {
      std::unique_ptr<Database> db = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReadConnection(this, std::move(db));
    }
  }
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<Database> db, Database::Open(options_.path));
  return ReadConnection(this, std::move(db));
}

absl::StatusOr<SubmitResult> JobStore::Submit(const NewJob& job) {
  SubmitResult result;
  const int64_t now = options_.now_micros();
  std::string spec_bytes;
  job.spec.SerializeToString(&spec_bytes);
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    if (!job.idempotency_key.empty()) {
      SQ_ASSIGN_OR_RETURN(Statement * find,
                          db.Prepare(absl::StrCat("SELECT ", kJobColumns,
                                                  " FROM jobs WHERE tenant=? AND "
                                                  "idempotency_key=?")));
      find->Bind(1, job.tenant).Bind(2, job.idempotency_key);
      SQ_ASSIGN_OR_RETURN(bool found, find->Step());
      if (found) {
        result.job = JobFromRow(*find, now);
        result.deduplicated = true;
        return absl::OkStatus();
      }
    }
    const std::string id = NewJobId();
    SQ_ASSIGN_OR_RETURN(
        Statement * insert,
        db.Prepare("INSERT INTO jobs(id, tenant, state, priority, spec, idempotency_key, "
                   "estimated_memory_bytes, max_attempts, created_us, queued_since_us) "
                   "VALUES(?,?,?,?,?,?,?,?,?,?)"));
    insert->Bind(1, id).Bind(2, job.tenant).Bind(3, int64_t{v1::QUEUED});
    insert->Bind(4, int64_t{job.spec.priority()}).BindBlob(5, spec_bytes);
    if (job.idempotency_key.empty()) {
      insert->BindNull(6);
    } else {
      insert->Bind(6, job.idempotency_key);
    }
    insert->Bind(7, job.estimated_memory_bytes).Bind(8, int64_t{job.max_attempts});
    insert->Bind(9, now).Bind(10, now);
    SQ_RETURN_IF_ERROR(insert->Run());
    const int64_t seq = db.LastInsertRowId();
    for (const auto& [key, value] : job.spec.labels()) {
      SQ_ASSIGN_OR_RETURN(Statement * label,
                          db.Prepare("INSERT INTO job_labels(job_seq, key, value) VALUES(?,?,?)"));
      label->Bind(1, seq).Bind(2, key).Bind(3, value);
      SQ_RETURN_IF_ERROR(label->Run());
    }
    result.job.Clear();
    result.job.set_id(id);
    result.job.set_tenant(job.tenant);
    *result.job.mutable_spec() = job.spec;
    result.job.set_state(v1::QUEUED);
    *result.job.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(now);
    result.deduplicated = false;
    events->push_back({v1::JOB_STATE_UNSPECIFIED, v1::QUEUED, 0, 0, &result.job});
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<v1::Job> JobStore::Get(const std::string& tenant, const std::string& id) {
  SQ_ASSIGN_OR_RETURN(ReadConnection db, Read());
  SQ_ASSIGN_OR_RETURN(
      Statement * stmt,
      (*db).Prepare(absl::StrCat("SELECT ", kJobColumns,
                                 " FROM jobs WHERE id=? AND (?='' OR tenant=?)")));
  stmt->Bind(1, id).Bind(2, tenant).Bind(3, tenant);
  SQ_ASSIGN_OR_RETURN(bool found, stmt->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  v1::Job job = JobFromRow(*stmt, options_.now_micros());
  stmt->Reset();
  return job;
}

absl::StatusOr<ListResult> JobStore::List(const std::string& tenant, const ListFilter& filter) {
  std::string sql = absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE tenant=?");
  if (!filter.states.empty()) {
    sql += " AND state IN (";
    for (size_t i = 0; i < filter.states.size(); ++i) sql += i == 0 ? "?" : ",?";
    sql += ")";
  }
  if (filter.before_seq > 0) sql += " AND seq<?";
  for (size_t i = 0; i < filter.labels.size(); ++i) {
    sql += " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.job_seq=jobs.seq AND "
           "l.key=? AND l.value=?)";
  }
  sql += " ORDER BY seq DESC LIMIT ?";

  SQ_ASSIGN_OR_RETURN(ReadConnection db, Read());
  SQ_ASSIGN_OR_RETURN(Statement * stmt, (*db).Prepare(sql));
  int index = 1;
  stmt->Bind(index++, tenant);
  for (v1::JobState state : filter.states) stmt->Bind(index++, int64_t{state});
  if (filter.before_seq > 0) stmt->Bind(index++, filter.before_seq);
  for (const auto& [key, value] : filter.labels) {
    stmt->Bind(index++, key).Bind(index++, value);
  }
  stmt->Bind(index++, int64_t{filter.page_size} + 1);

  ListResult result;
  const int64_t now = options_.now_micros();
  int64_t last_seq = 0;
  while (true) {
    SQ_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) break;
    if (static_cast<int>(result.jobs.size()) == filter.page_size) {
      result.next_before_seq = last_seq;
      break;
    }
    last_seq = stmt->ColumnInt(0);
    result.jobs.push_back(JobFromRow(*stmt, now));
  }
  stmt->Reset();
  return result;
}

absl::StatusOr<v1::Job> JobStore::Cancel(const std::string& tenant, const std::string& id) {
  v1::Job job;
  const int64_t now = options_.now_micros();
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row,
                        SelectJobRow(db, "id=? AND tenant=?", [&](Statement* s) {
                          s->Bind(1, id).Bind(2, tenant);
                        }));
    if (!row) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    SQ_RETURN_IF_ERROR(CheckTransition(id, row->state, v1::CANCELLED));
    TransitionEvent event{row->state, v1::CANCELLED, 0, 0, &job};
    SQ_ASSIGN_OR_RETURN(
        Statement * update,
        db.Prepare("UPDATE jobs SET state=?, finished_us=?, cancel_requested=1, "
                   "queue_us=queue_us+?, run_us=run_us+? WHERE seq=? AND state=?"));
    int64_t queued = row->state == v1::QUEUED ? now - row->queued_since_us : 0;
    int64_t ran = row->state == v1::RUNNING ? now - row->started_us : 0;
    event.queue_seconds = queued / 1e6;
    event.run_seconds = ran / 1e6;
    update->Bind(1, int64_t{v1::CANCELLED}).Bind(2, now).Bind(3, queued).Bind(4, ran);
    update->Bind(5, row->seq).Bind(6, int64_t{row->state});
    SQ_RETURN_IF_ERROR(update->Run());
    SQ_ASSIGN_OR_RETURN(job, SelectJobBySeq(db, row->seq, now));
    events->push_back(event);
    return absl::OkStatus();
  }));
  return job;
}

absl::StatusOr<std::optional<Lease>> JobStore::Acquire(const std::string& worker_id,
                                                       int64_t memory_bytes,
                                                       int64_t lease_micros) {
  std::optional<Lease> lease;
  const int64_t now = options_.now_micros();
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    lease.reset();
    SQ_ASSIGN_OR_RETURN(Statement * top,
                        db.Prepare("SELECT MAX(priority) FROM jobs WHERE state=? AND "
                                   "not_before_us<=? AND estimated_memory_bytes<=?"));
    top->Bind(1, int64_t{v1::QUEUED}).Bind(2, now).Bind(3, memory_bytes);
    SQ_ASSIGN_OR_RETURN(bool has_top, top->Step());
    if (!has_top || top->ColumnIsNull(0)) return absl::OkStatus();
    const int64_t priority = top->ColumnInt(0);
    top->Reset();

    // Running jobs per tenant, for fairness.
    std::map<std::string, int64_t> running;
    SQ_ASSIGN_OR_RETURN(Statement * busy,
                        db.Prepare("SELECT tenant, COUNT(*) FROM jobs WHERE state=? "
                                   "GROUP BY tenant"));
    busy->Bind(1, int64_t{v1::RUNNING});
    while (true) {
      SQ_ASSIGN_OR_RETURN(bool has_row, busy->Step());
      if (!has_row) break;
      running[busy->ColumnText(0)] = busy->ColumnInt(1);
    }

    // The oldest ready job of each tenant at that priority; pick the tenant
    // with the fewest running jobs, then the oldest job.
    SQ_ASSIGN_OR_RETURN(Statement * heads,
                        db.Prepare("SELECT tenant, MIN(seq) FROM jobs WHERE state=? AND "
                                   "priority=? AND not_before_us<=? AND "
                                   "estimated_memory_bytes<=? GROUP BY tenant"));
    heads->Bind(1, int64_t{v1::QUEUED}).Bind(2, priority).Bind(3, now).Bind(4, memory_bytes);
    int64_t best_seq = 0;
    int64_t best_running = 0;
    while (true) {
      SQ_ASSIGN_OR_RETURN(bool has_row, heads->Step());
      if (!has_row) break;
      int64_t tenant_running = running[heads->ColumnText(0)];
      int64_t seq = heads->ColumnInt(1);
      if (best_seq == 0 || tenant_running < best_running ||
          (tenant_running == best_running && seq < best_seq)) {
        best_seq = seq;
        best_running = tenant_running;
      }
    }
    if (best_seq == 0) return absl::OkStatus();

    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "seq=?", [&](Statement* s) {
                          s->Bind(1, best_seq);
                        }));
    SQ_ASSIGN_OR_RETURN(
        Statement * update,
        db.Prepare("UPDATE jobs SET state=?, attempts=attempts+1, started_us=?, "
                   "queue_us=queue_us+?, lease_owner=?, lease_expires_us=?, worker=?, "
                   "progress=NULL WHERE seq=? AND state=?"));
    update->Bind(1, int64_t{v1::RUNNING}).Bind(2, now).Bind(3, now - row->queued_since_us);
    update->Bind(4, worker_id).Bind(5, now + lease_micros).Bind(6, worker_id);
    update->Bind(7, best_seq).Bind(8, int64_t{v1::QUEUED});
    SQ_RETURN_IF_ERROR(update->Run());
    SQ_ASSIGN_OR_RETURN(v1::Job job, SelectJobBySeq(db, best_seq, now));
    lease = Lease{std::move(job), row->attempts + 1};
    events->push_back({v1::QUEUED, v1::RUNNING, (now - row->queued_since_us) / 1e6, 0,
                       &lease->job});
    return absl::OkStatus();
  }));
  return lease;
}

absl::StatusOr<bool> JobStore::Heartbeat(const std::string& worker_id, const std::string& id,
                                         int attempt, const v1::Progress* progress,
                                         int64_t lease_micros) {
  bool cancelled = false;
  const int64_t now = options_.now_micros();
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>*) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "id=?", [&](Statement* s) {
                          s->Bind(1, id);
                        }));
    SQ_RETURN_IF_ERROR(CheckLeaseHolder(id, row, worker_id, attempt));
    if (row->state == v1::CANCELLED) {
      cancelled = true;
      return absl::OkStatus();
    }
    if (row->state != v1::RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " is ", JobStateName(row->state), ", not RUNNING"));
    }
    SQ_ASSIGN_OR_RETURN(Statement * update,
                        db.Prepare("UPDATE jobs SET lease_expires_us=?, "
                                   "progress=COALESCE(?, progress) WHERE seq=?"));
    update->Bind(1, now + lease_micros);
    if (progress != nullptr) {
      update->BindBlob(2, progress->SerializeAsString());
    } else {
      update->BindNull(2);
    }
    update->Bind(3, row->seq);
    return update->Run();
  }));
  return cancelled;
}

absl::Status JobStore::Complete(const std::string& worker_id, const std::string& id,
                                int attempt, const std::vector<v1::Variant>& variants) {
  v1::Job job;
  const int64_t now = options_.now_micros();
  return Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "id=?", [&](Statement* s) {
                          s->Bind(1, id);
                        }));
    SQ_RETURN_IF_ERROR(CheckLeaseHolder(id, row, worker_id, attempt));
    SQ_RETURN_IF_ERROR(CheckTransition(id, row->state, v1::SUCCEEDED));
    v1::Job holder;
    for (const v1::Variant& variant : variants) *holder.add_variants() = variant;
    v1::Progress done;
    done.set_stage("done");
    done.set_fraction(1.0);
    SQ_ASSIGN_OR_RETURN(Statement * update,
                        db.Prepare("UPDATE jobs SET state=?, finished_us=?, run_us=run_us+?, "
                                   "variants=?, progress=?, lease_owner=NULL WHERE seq=?"));
    update->Bind(1, int64_t{v1::SUCCEEDED}).Bind(2, now).Bind(3, now - row->started_us);
    update->BindBlob(4, holder.SerializeAsString()).BindBlob(5, done.SerializeAsString());
    update->Bind(6, row->seq);
    SQ_RETURN_IF_ERROR(update->Run());
    SQ_ASSIGN_OR_RETURN(job, SelectJobBySeq(db, row->seq, now));
    events->push_back({v1::RUNNING, v1::SUCCEEDED, 0, (now - row->started_us) / 1e6, &job});
    return absl::OkStatus();
  });
}

absl::Status JobStore::EndAttempt(Database& db, int64_t seq, const v1::JobError& error,
                                  bool retryable, std::vector<TransitionEvent>* events) {
  const int64_t now = options_.now_micros();
  SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "seq=?", [&](Statement* s) {
                        s->Bind(1, seq);
                      }));
  if (!row || row->state != v1::RUNNING) {
    return absl::FailedPreconditionError("attempt already ended");
  }
  const bool retry = retryable && row->attempts < row->max_attempts;
  v1::JobError recorded = error;
  if (!retry && retryable) {
    recorded.set_message(absl::StrCat("gave up after ", row->attempts, " attempts; last: ",
                                      error.message()));
  }
  SQ_ASSIGN_OR_RETURN(
      Statement * update,
      db.Prepare("UPDATE jobs SET state=?, error=?, run_us=run_us+?, lease_owner=NULL, "
                 "queued_since_us=?, not_before_us=?, finished_us=? WHERE seq=? AND state=?"));
  update->Bind(1, int64_t{retry ? v1::QUEUED : v1::FAILED});
  update->BindBlob(2, recorded.SerializeAsString()).Bind(3, now - row->started_us);
  update->Bind(4, now).Bind(5, retry ? now + options_.retry.BackoffMicros(row->attempts) : 0);
  update->Bind(6, retry ? 0 : now).Bind(7, seq).Bind(8, int64_t{v1::RUNNING});
  SQ_RETURN_IF_ERROR(update->Run());
  events->push_back(
      {v1::RUNNING, retry ? v1::QUEUED : v1::FAILED, 0, (now - row->started_us) / 1e6, nullptr});
  return absl::OkStatus();
}

absl::Status JobStore::Fail(const std::string& worker_id, const std::string& id, int attempt,
                            const v1::JobError& error, bool retryable) {
  return Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "id=?", [&](Statement* s) {
                          s->Bind(1, id);
                        }));
    SQ_RETURN_IF_ERROR(CheckLeaseHolder(id, row, worker_id, attempt));
    SQ_RETURN_IF_ERROR(CheckTransition(id, row->state, v1::FAILED));
    return EndAttempt(db, row->seq, error, retryable, events);
  });
}

absl::StatusOr<int> JobStore::ExpireLeases() {
  int moved = 0;
  const int64_t now = options_.now_micros();
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(Statement * expired,
                        db.Prepare("SELECT seq, lease_owner FROM jobs WHERE state=? AND "
                                   "lease_expires_us<?"));
    expired->Bind(1, int64_t{v1::RUNNING}).Bind(2, now);
    std::vector<std::pair<int64_t, std::string>> rows;
    while (true) {
      SQ_ASSIGN_OR_RETURN(bool has_row, expired->Step());
      if (!has_row) break;
      rows.emplace_back(expired->ColumnInt(0), expired->ColumnText(1));
    }
    moved = 0;
    for (const auto& [seq, owner] : rows) {
      v1::JobError error;
      error.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
      error.set_message(absl::StrCat("lease expired: worker ", owner, " stopped heartbeating"));
      SQ_RETURN_IF_ERROR(EndAttempt(db, seq, error, /*retryable=*/true, events));
      ++moved;
    }
    return absl::OkStatus();
  }));
  return moved;
}

absl::StatusOr<int> JobStore::ReleaseWorker(const std::string& worker_id,
                                            const std::string& reason) {
  int moved = 0;
  SQ_RETURN_IF_ERROR(Write([&](Database& db, std::vector<TransitionEvent>* events) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(Statement * held,
                        db.Prepare("SELECT seq FROM jobs WHERE state=? AND lease_owner=?"));
    held->Bind(1, int64_t{v1::RUNNING}).Bind(2, worker_id);
    std::vector<int64_t> seqs;
    while (true) {
      SQ_ASSIGN_OR_RETURN(bool has_row, held->Step());
      if (!has_row) break;
      seqs.push_back(held->ColumnInt(0));
    }
    moved = 0;
    for (int64_t seq : seqs) {
      v1::JobError error;
      error.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
      error.set_message(absl::StrCat("worker ", worker_id, " died: ", reason));
      SQ_RETURN_IF_ERROR(EndAttempt(db, seq, error, /*retryable=*/true, events));
      ++moved;
    }
    return absl::OkStatus();
  }));
  return moved;
}

absl::StatusOr<std::map<v1::JobState, int64_t>> JobStore::CountByState() {
  SQ_ASSIGN_OR_RETURN(ReadConnection db, Read());
  SQ_ASSIGN_OR_RETURN(Statement * stmt,
                      (*db).Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state"));
  std::map<v1::JobState, int64_t> counts;
  while (true) {
    SQ_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) break;
    counts[static_cast<v1::JobState>(stmt->ColumnInt(0))] = stmt->ColumnInt(1);
  }
  return counts;
}

absl::Status JobStore::RecordTrial(const std::string& worker_id, const std::string& id, int attempt,
                                   v1::TrialRecord trial) {
  trial.set_attempt(attempt);
  return Write([&](Database& db, std::vector<TransitionEvent>*) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(std::optional<JobRow> row, SelectJobRow(db, "id=?", [&](Statement* s) {
                          s->Bind(1, id);
                        }));
    SQ_RETURN_IF_ERROR(CheckLeaseHolder(id, row, worker_id, attempt));
    if (row->state != v1::RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " is ", JobStateName(row->state), ", not RUNNING"));
    }
    SQ_ASSIGN_OR_RETURN(Statement * upsert,
                        db.Prepare("INSERT OR REPLACE INTO trials(job_seq, device, trial, record) "
                                   "VALUES(?,?,?,?)"));
    upsert->Bind(1, row->seq).Bind(2, trial.device()).Bind(3, int64_t{trial.trial()});
    upsert->BindBlob(4, trial.SerializeAsString());
    return upsert->Run();
  });
}

absl::StatusOr<std::vector<v1::TrialRecord>> JobStore::Trials(const std::string& id) {
  SQ_ASSIGN_OR_RETURN(ReadConnection db, Read());
  SQ_ASSIGN_OR_RETURN(Statement * stmt,
                      (*db).Prepare("SELECT t.record FROM trials t JOIN jobs j ON t.job_seq = j.seq "
                                    "WHERE j.id=? ORDER BY t.device, t.trial"));
  stmt->Bind(1, id);
  std::vector<v1::TrialRecord> trials;
  while (true) {
    SQ_ASSIGN_OR_RETURN(bool has_row, stmt->Step());
    if (!has_row) break;
    v1::TrialRecord& trial = trials.emplace_back();
    if (!trial.ParseFromString(stmt->ColumnBlob(0))) {
      return absl::DataLossError(absl::StrCat("job ", id, ": a stored trial record does not parse"));
    }
  }
  return trials;
}

absl::Status JobStore::RecordBlob(const std::string& tenant, const std::string& sha256,
                                  int64_t size_bytes, v1::BlobKind kind) {
  const int64_t now = options_.now_micros();
  return Write([&](Database& db, std::vector<TransitionEvent>*) -> absl::Status {
    SQ_ASSIGN_OR_RETURN(Statement * insert,
                        db.Prepare("INSERT OR IGNORE INTO blobs(tenant, sha256, size_bytes, "
                                   "kind, created_us) VALUES(?,?,?,?,?)"));
    insert->Bind(1, tenant).Bind(2, sha256).Bind(3, size_bytes).Bind(4, int64_t{kind});
    insert->Bind(5, now);
    return insert->Run();
  });
}

absl::StatusOr<bool> JobStore::TenantOwnsBlob(const std::string& tenant,
                                              const std::string& sha256) {
  SQ_ASSIGN_OR_RETURN(ReadConnection db, Read());
  SQ_ASSIGN_OR_RETURN(Statement * stmt,
                      (*db).Prepare("SELECT 1 FROM blobs WHERE tenant=? AND sha256=?"));
  stmt->Bind(1, tenant).Bind(2, sha256);
  SQ_ASSIGN_OR_RETURN(bool found, stmt->Step());
  stmt->Reset();
  return found;
}

uint64_t JobStore::Version() {
  std::lock_guard<std::mutex> lock(version_mu_);
  return version_;
}

uint64_t JobStore::WaitForChange(uint64_t seen, int64_t timeout_micros) {
  std::unique_lock<std::mutex> lock(version_mu_);
  version_cv_.wait_for(lock, std::chrono::microseconds(timeout_micros),
                       [&] { return version_ != seen; });
  return version_;
}

}  // namespace squeeze::server
