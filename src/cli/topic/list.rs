//! `fjord topic list`: topic names from Metadata.

use super::super::args::ConnectArgs;
use super::super::error::CliError;
use super::super::metadata::{self, TopicInfo};
use super::super::output::emit;

/// Arguments of `fjord topic list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Include internal topics such as `__consumer_offsets`.
    #[arg(long)]
    pub internal: bool,
}

/// Prints the topic names, one per line, sorted.
pub fn run(args: ListArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let cluster = metadata::fetch(pool.bootstrap(), None, false)?;
    emit(&render(&cluster.topics, args.internal))
}

fn render(topics: &[TopicInfo], internal: bool) -> String {
    let mut names: Vec<&str> = topics.iter().filter(|t| internal || !t.is_internal).map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.iter().map(|n| format!("{n}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, is_internal: bool) -> TopicInfo {
        TopicInfo { name: name.into(), topic_id: uuid::Uuid::nil(), error_code: 0, is_internal, partitions: vec![] }
    }

    #[test]
    fn list_sorts_names_and_hides_internal_topics_by_default() {
        let topics = [topic("b", false), topic("__consumer_offsets", true), topic("a", false)];
        assert_eq!(render(&topics, false), "a\nb\n");
        assert_eq!(render(&topics, true), "__consumer_offsets\na\nb\n");
    }
}
