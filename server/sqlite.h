// A thin RAII layer over the SQLite C API: one Database per connection, one
// Statement per prepared query. SQLite return codes become absl::Status here
// and nowhere else. Neither class is thread-safe; JobStore owns the locking.
#ifndef SQUEEZE_SERVER_SQLITE_H_
#define SQUEEZE_SERVER_SQLITE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace squeeze::server {

class Statement;

class Database {
 public:
  // Opens (creating if needed) the database at `path`, in WAL mode with
  // synchronous=FULL (every commit is durable) and a busy timeout.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements that return no rows.
  absl::Status Exec(std::string_view sql);

  // Returns the prepared statement for `sql`, reset and with no bindings.
  // Statements are cached per connection: the returned reference stays valid
  // for the life of the Database; do not hold two uses of the same SQL at once.
  absl::StatusOr<Statement*> Prepare(const std::string& sql);

  // Rewinds every cached statement, ending any read they hold open (an open
  // read would pin the WAL snapshot and stop checkpoints).
  void ResetAll();

  int64_t LastInsertRowId() const;
  int Changes() const;

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, std::unique_ptr<Statement>> cache_;
};

class Statement {
 public:
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binders take 1-based parameter indexes, as SQLite does.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view text);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& BindNull(int index);

  // Advances to the next row: true when a row is ready, false when done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();

  int64_t ColumnInt(int column) const;  // 0-based columns.
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  bool ColumnIsNull(int column) const;

  // Clears bindings and rewinds; done automatically by Database::Prepare.
  void Reset();

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  absl::Status Error(int rc) const;

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = 0;  // First binding error, reported by Step.
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_SQLITE_H_
