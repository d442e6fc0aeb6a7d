//! Every image task holds the same decoded dataset (one `Arc`), never a copy: the paper stored
//! a transformed dataset per task. Alone in its own test binary so that no other test holds
//! references to the dataset while the count is read.

mod common;

#[test]
fn every_task_shares_one_copy_of_the_dataset() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let shared = gatekit::data::load_mnist(&data.join("mnist")).unwrap();
    let before = std::sync::Arc::strong_count(&shared);
    let body: String = (0..10)
        .map(|i| format!("[[task]]\nname = \"t{i}\"\nkind = \"permuted-mnist\"\n"))
        .collect();
    let text = format!(
        "[run]\nmodel = \"{}/lenet5.toml\"\nsteps = 10\n{body}",
        common::repo("models").display()
    );
    let set = gatekit::TaskSet::parse_with(&text, std::path::Path::new("test.toml"), &|m: &str| {
        gatekit::ModelSpec::load(std::path::Path::new(m))
    })
    .unwrap();
    let tasks = set.build_tasks(Some(&data)).unwrap();
    assert_eq!(tasks.len(), 10);
    assert_eq!(
        std::sync::Arc::strong_count(&shared),
        before + 10,
        "one Arc per task, no copies"
    );
    drop(tasks);
    assert_eq!(std::sync::Arc::strong_count(&shared), before);
}
