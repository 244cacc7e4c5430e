"""A wrong module path points at `harness model modules`, the command that lists the valid ones (issue #18)."""

import pytest
import torch

from harness.errors import SiteError
from harness.sites._base import resolve_module


def test_a_wrong_module_path_names_the_nearest_ones_and_the_listing_command():
    model = torch.nn.Sequential()
    model.add_module("layers", torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(2, 2))]))
    with pytest.raises(SiteError) as caught:
        resolve_module(model, "layers.0.1")
    message = str(caught.value)
    assert "layers.0.0" in message and "harness model modules" in message
    assert "named_modules" not in message and "[name for" not in message
