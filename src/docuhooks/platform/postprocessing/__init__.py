"""Post-processing: calls made in the background, durable by the version row.

Finishing an interview whose template the site's PostProcessingEvent webhook selects puts the
version in `PostProcessing` (`begin`, in the finishing transaction) and returns: nobody waits
for the receiver. A driver then takes the version:

* **claim** (one short transaction): a new one-time completion token, the call's ids, and
  `post_processing_due_at` moved past the call's timeout. The row is locked while claiming
  (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite) and is not due again
  until that time passes, so two drivers never call the same version at once.
* **call**: signed and sent like every other webhook call, bounded by the webhook's
  `timeoutSeconds` and the version's deadline.
* **judge** (no transaction): the reply is read and its documents checked in a render
  worker (`replies.judge_in_pool`), never on the event loop.
* **settle** (one transaction, with the call's delivery log): an inline reply's documents are
  applied and the version completed; a 202 leaves it waiting for `PUT completeUrl` until the
  deadline; a failure puts the original documents back and completes it. A reply that comes
  after another driver took the version over (its lease ran out) changes nothing.

The claim's and the settle's transactions run again from the start should PostgreSQL abort
one to end a deadlock (`Database.retried`; `platform.workitems` says through what): each only
writes rows, the call is made and its reply judged once, outside them, and the workers are
woken once, after the commit.

A version whose due time passes is driven again by any process: its deadline passed (the
originals are put back and it completes, `timed_out`), or the process calling it stopped
mid-call, and the receiver is called again from the original documents, with a new event
and a new `completeUrl` (the old one stops working), at most `MAX_CALLS` times in all.

The app runs one driver (`driver.start_post_processor`): it takes versions as they finish
and looks for due ones every `SWEEP_SECONDS`. Without it (a script), finishing drives the
version before it returns.

The modules:

* `driver`: entering post-processing (`begin`, `after_finish`), `drive_due`, and the app's
  background driver (`PostProcessor`);
* `claiming`: claiming a due version, or completing it when it cannot be called;
* `calls`: calling the receiver and settling what it answered;
* `replies` (pure): what a reply means and where its documents go;
* `records` (pure): the completion token, the event's data, the version's record.
"""
