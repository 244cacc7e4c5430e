import numpy as np

from harness.config import ActivationDisplayConfig
from harness.explain import normalise_activations, render_example


def test_normalise_scales_to_zero_ten_and_clips_negatives():
    values = normalise_activations(np.array([0.0, 2.4, 5.0, 10.0, 12.0, -3.0]), scale=10.0)
    assert values.tolist() == [0, 2, 5, 10, 10, 0]
    assert normalise_activations(np.array([1.0, 2.0]), scale=0.0).tolist() == [0, 0]


def test_highlight_marks_runs_of_active_tokens(make_example):
    item = make_example(1, ["The", " New", " York", " times", "\n", "x"], [0.0, 8.0, 9.0, 1.0, 0.0, 5.0])
    text = render_example(item, scale=10.0, display=ActivationDisplayConfig(mode="highlight", highlight_threshold=0.3))
    # 8 and 9 >= 3 form one run; 1 is below the threshold; the newline is escaped to keep one line
    assert text == "The <<New York>> times\\n<<x>>"


def test_highlight_threshold_is_relative_to_the_feature_scale(make_example):
    item = make_example(1, ["a", "b"], [2.0, 4.0])
    high = ActivationDisplayConfig(highlight_threshold=0.5)
    assert render_example(item, scale=10.0, display=high) == "ab"
    assert render_example(item, scale=5.0, display=high) == "a<<b>>"
    assert render_example(item, scale=3.0, display=high) == "<<ab>>"


def test_values_lists_every_token_with_its_scaled_value(make_example):
    item = make_example(1, ["def", " f", "\t"], [10.0, 5.0, -1.0])
    text = render_example(item, scale=10.0, display=ActivationDisplayConfig(mode="values"))
    assert text.splitlines() == ["<start>", "def\t10", " f\t5", "\\t\t0", "<end>"]
