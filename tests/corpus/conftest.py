import pytest

from harness.config import SubjectModelConfig
from harness.model import load_subject_model


@pytest.fixture(scope="session")
def subject_tokenizer():
    return load_subject_model(SubjectModelConfig()).tokenizer
