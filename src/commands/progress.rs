//! Progress lines for model installs, on stderr.

use shardlab_engine::model::store::PullEvent;

pub fn print_pull_event(event: PullEvent) {
    eprintln!("{event}");
}
