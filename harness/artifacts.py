"""Where a tracked run keeps each artifact (docs/tracking.md): the paths tracking writes and readers read.

Constants only, so the leaderboard and other readers name the same files without importing the pipeline.
"""

TABLES = "tables"
PLOTS = "plots"
CONFIG_FILE = "config.yaml"  # the variant's whole config
ERROR_FILE = "error.txt"  # on a FAILED or KILLED run: why it stopped, in full

# A variant run's tables (MLflow's table JSON, {"columns", "data"}).
PER_FEATURE_TABLE = f"{TABLES}/per_feature.json"
DESCRIPTIONS_TABLE = f"{TABLES}/descriptions.json"
# The sample tables name samples by id; each sample's text (and tokens) is once in CORPUS_SAMPLES_TABLE.
TOP_EXAMPLES_TABLE = f"{TABLES}/top_examples.json"
RATED_SAMPLES_TABLE = f"{TABLES}/rated_samples.json"  # corpus samples rated for Responsiveness and Purity
RATED_CONTINUATIONS_TABLE = f"{TABLES}/rated_continuations.json"  # steered continuations rated for Faithfulness
CORPUS_SAMPLES_TABLE = f"{TABLES}/corpus_samples.json"
# Which columns of the per-feature table are scores, and what each is (harness.track.manifest).
SCORE_MANIFEST = f"{TABLES}/score_columns.json"

# A variant run's plots; each feature's FADE plots go under FEATURE_PLOTS/<feature>/.
SCORE_DISTRIBUTIONS_PLOT = f"{PLOTS}/score_distributions.png"
RADAR_MEANS_PLOT = f"{PLOTS}/radar_means.png"
FEATURE_PLOTS = f"{PLOTS}/features"

# A comparison's or study's parent run.
PAIRED_COMPARISONS_TABLE = f"{TABLES}/paired_comparisons.json"
CONTROLS_TABLE = f"{TABLES}/controls.json"  # each variant vs its randomized controls, per score
FEATURE_LABELS_TABLE = f"{TABLES}/feature_labels.json"  # why each feature's score is what it is, per variant
SCORER_AGREEMENT_TABLE = f"{TABLES}/scorer_rank_correlation.json"
# per variant, each input-side vs output-side score: Spearman across features (harness.track.sides), and scatters
SIDES_TABLE = f"{TABLES}/input_vs_output.json"
SIDES_PLOTS = f"{PLOTS}/input_vs_output"
SCORER_AGREEMENT_PLOT = f"{PLOTS}/scorer_rank_correlation.png"
STUDY_PLOTS = f"{PLOTS}/study"  # the search's Optuna plots, <name>.png (or <name>.txt saying why not drawn)
