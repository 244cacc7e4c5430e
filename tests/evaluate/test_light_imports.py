"""The pure metric modules can be used without the model or the LLM stack (no torch, litellm, mlflow)."""

import subprocess
import sys


def test_importing_the_metrics_loads_no_model_or_llm_library():
    code = (
        "import sys\n"
        "import harness.evaluate, harness.evaluate.scores, harness.evaluate.fade\n"
        "import harness.evaluate.fade._metrics, harness.evaluate.fade.sampling, harness.evaluate.fade.results\n"
        "print(sorted(name for name in ('torch', 'transformers', 'litellm', 'mlflow') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_stage_names_still_import_from_the_package():
    from harness.evaluate import ResultStore, evaluate_descriptions, read_descriptions
    from harness.evaluate.fade.pipeline import evaluate_descriptions as defined
    from harness.evaluate.fade.results import ResultStore as store

    assert evaluate_descriptions is defined and ResultStore is store and callable(read_descriptions)
