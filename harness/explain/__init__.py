"""explain stage: explainers (registered by name), prompt templates, baselines and importers.

An explainer turns each feature's activating examples, or what it does to the output (output-centric
explainers), into a description; `generate_descriptions`
runs one pipeline variant (an ExplainConfig) over FeatureRecords and returns the descriptions table.
"""

from harness.explain._display import highlight_tokens, normalise_activations, render_example
from harness.explain._explainer import (
    EXPLAINERS,
    Explainer,
    generate_descriptions,
    llm_settings,
    make_explainer,
    settings_hash,
)
from harness.explain._importing import (
    IMPORTERS,
    DescriptionImportWarning,
    Importer,
    ImportReport,
    RowProblem,
    import_descriptions,
)
from harness.explain._llm_explainer import ExplainerPrompt, build_prompt, choose_description, parse_description
from harness.explain._output_evidence import (
    OutputEvidence,
    TokenChange,
    TokenList,
    output_evidence,
    render_output_evidence,
)
from harness.explain._records import FeatureRecord, build_feature_records
from harness.explain._selection import ExampleSelection, crop_to_window, select_examples
from harness.explain._shuffled import derangement, shuffle_table
from harness.explain._table import (
    DESCRIPTIONS_SCHEMA,
    Description,
    descriptions_from_table,
    descriptions_table,
    is_llm_failure,
    llm_failure,
    truncate_for_display,
    validate_descriptions,
)
from harness.explain._templates import PLACEHOLDERS, PromptTemplate, builtin_template_names, load_template

__all__ = [
    "DESCRIPTIONS_SCHEMA",
    "EXPLAINERS",
    "IMPORTERS",
    "PLACEHOLDERS",
    "Description",
    "DescriptionImportWarning",
    "ExampleSelection",
    "Explainer",
    "ExplainerPrompt",
    "FeatureRecord",
    "ImportReport",
    "OutputEvidence",
    "Importer",
    "PromptTemplate",
    "RowProblem",
    "TokenChange",
    "TokenList",
    "build_feature_records",
    "build_prompt",
    "builtin_template_names",
    "choose_description",
    "crop_to_window",
    "derangement",
    "descriptions_from_table",
    "descriptions_table",
    "is_llm_failure",
    "llm_failure",
    "generate_descriptions",
    "highlight_tokens",
    "import_descriptions",
    "llm_settings",
    "load_template",
    "make_explainer",
    "normalise_activations",
    "output_evidence",
    "parse_description",
    "render_example",
    "render_output_evidence",
    "select_examples",
    "settings_hash",
    "shuffle_table",
    "truncate_for_display",
    "validate_descriptions",
]
