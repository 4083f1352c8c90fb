"""utils.checks.ch05: each check passes a correct student-style answer, rejects a planted mistake with the
message that names it, and rejects an answer that merely calls the course's reference."""

from __future__ import annotations

import pytest
import torch

from utils import losses, resample
from _helpers import fails as _fails
from _helpers import mine as _mine
from utils.checks import ch05 as checks
from utils.checks import ch05_resample
from utils.resample import resample_dead_latents_ as reference_resample

# Answers are written here as a student would; assert_own_code wants them to live in `__main__`.






# ---- exercise 1 ------------------------------------------------------------------------------------
def _freq_factory(count=lambda a: a != 0, per_batch_mean=False, counts_only=False):
    @_mine
    def firing_frequency(sae, x, batch_size=4096):
        with torch.no_grad():
            parts = [count(sae.encode(xb)).float() for xb in x.split(batch_size)]
        if per_batch_mean:
            return torch.stack([p.mean(0) for p in parts]).mean(0)
        total = torch.cat(parts).sum(0)
        return total if counts_only else total / x.shape[0]

    return firing_frequency


@_mine
def _find_dead(freq):
    return freq == 0


def test_firing_frequency_accepts_a_correct_answer(capsys):
    checks.check_firing_frequency(_freq_factory(), _find_dead)
    assert "look right" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, match", [
    (dict(count=lambda a: a > 0), "!= 0, not > 0"),
    (dict(per_batch_mean=True), "short last batch"),
    (dict(counts_only=True), "returned counts"),
])
def test_firing_frequency_names_the_mistake(kwargs, match):
    _fails(checks.check_firing_frequency, _freq_factory(**kwargs), _find_dead, match=match)


def test_firing_frequency_averaged_values_and_threshold():
    @_mine
    def mean_values(sae, x, batch_size=4096):
        return sae.encode(x).mean(0)

    _fails(checks.check_firing_frequency, mean_values, _find_dead, match="activation \\*values\\*")

    @_mine
    def threshold(freq):
        return freq < 1e-6

    _fails(checks.check_firing_frequency, _freq_factory(), threshold, match="rare, not dead")


def test_firing_frequency_rejects_the_reference():
    @_mine
    def firing_frequency(sae, x, batch_size=4096):
        return resample.firing_counts(sae, x, batch_size) / x.shape[0]

    _fails(checks.check_firing_frequency, firing_frequency, _find_dead, match="scores zero")


# ---- exercise 2 ------------------------------------------------------------------------------------
def resample_dead_neurons(sae, activations, dead_threshold=1e-7):
    """The seed's function, as the chapter's read-only cell defines it."""
    mean_activation = activations.mean(dim=0)
    dead_mask = mean_activation < dead_threshold
    errors = (activations - sae(activations)[0]).pow(2).sum(dim=-1)
    top_error_examples = activations[errors.topk(dead_mask.sum()).indices]
    sae.encoder.weight[dead_mask] = top_error_examples


def test_claims_format():
    for bad, match in [(None, "set TRUE_CLAIMS"), ("AC", "not one string"), ({"A", "Z"}, "unknown claim"),
                       (set(), "some are true"), (set("ABCDEFGHIJ"), "some are true")]:
        _fails(checks.check_claims, bad, resample_dead_neurons, match=match)


def test_claims_are_checked_against_the_seed_code(capsys):
    checks.check_claims({"a", "C", "D", "E", "F", "I"}, resample_dead_neurons)
    assert "agree with what the seed's code does" in capsys.readouterr().out
    _fails(checks.check_claims, set("ACDEFHI"), resample_dead_neurons, match="claim H: you marked it true")
    _fails(checks.check_claims, set("ACDEF"), resample_dead_neurons, match="claim I: you marked it false")


def test_claims_follow_the_code_not_an_answer_key():
    """A seed that also rewrote the decoder would make claim D false: the check observes, it does not recite."""
    def fixed_decoder(sae, activations, dead_threshold=1e-7):
        resample_dead_neurons(sae, activations, dead_threshold)
        sae.decoder.weight.mul_(2.0)

    _fails(checks.check_claims, set("ACDEFI"), fixed_decoder, match="claim D: you marked it true")


# ---- exercise 3 ------------------------------------------------------------------------------------
def _resampler(*, centre=True, normalise=True, scale_alive=True, zero_bias=True, reset_adam=True,
               power=2, topk=False, reset_counter=True):
    @_mine
    @torch.no_grad()
    def resample_dead_latents_(sae, x, dead, *, optimizer=None, enc_scale=0.2, generator=None):
        idx = dead.nonzero().squeeze(-1)
        if idx.numel() == 0:
            return 0
        loss = (x - sae.decode(sae.encode(x))).pow(2).sum(-1)
        if topk:
            pick = loss.topk(idx.numel() if idx.numel() <= len(loss) else len(loss)).indices
            pick = pick[torch.arange(idx.numel()) % len(pick)]
        else:
            pick = torch.multinomial(loss.pow(power), idx.numel(), replacement=True, generator=generator)
        dirs = x[pick] - (sae.b_dec if centre else 0)
        if normalise:
            dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        norms = sae.W_enc.norm(dim=0)
        mean = norms[~dead].mean() if scale_alive else norms.mean()
        sae.W_dec[idx] = dirs
        sae.W_enc[:, idx] = (dirs / dirs.norm(dim=-1, keepdim=True) * enc_scale * mean).T
        if zero_bias:
            sae.b_enc[idx] = 0.0
        if reset_counter:
            sae.tokens_since_fired[idx] = 0.0
        if optimizer is not None and reset_adam:
            for p, axis in ((sae.W_enc, 1), (sae.W_dec, 0), (sae.b_enc, 0)):
                for key in ("exp_avg", "exp_avg_sq"):
                    optimizer.state[p][key].index_fill_(axis, idx, 0.0)
        return int(idx.numel())

    return resample_dead_latents_


def test_resample_accepts_a_correct_answer(capsys):
    checks.check_resample(_resampler())
    assert "matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, match", [
    (dict(centre=False), "x − b_dec"),
    (dict(normalise=False), "unit norm"),
    (dict(scale_alive=False), "\\*alive\\* latents"),
    (dict(zero_bias=False), "encoder bias"),
    (dict(reset_adam=False), "Adam's exp_avg"),
    (dict(reset_counter=False), "tokens_since_fired"),
    (dict(power=1), "∝ loss \\(not loss²\\)"),
])
def test_resample_names_the_mistake(kwargs, match):
    _fails(checks.check_resample, _resampler(**kwargs), match=match)


def test_resample_sampling_check_catches_loss_and_topk():
    _fails(ch05_resample._check_sampling, _resampler(power=1), match="as if ∝ loss")
    _fails(ch05_resample._check_sampling, _resampler(topk=True), match="do not take the top-k")
    ch05_resample._check_sampling(_resampler())


def test_resample_rejects_the_reference_and_alive_changes():
    @_mine
    def calls_reference(sae, x, dead, **kw):
        return reference_resample(sae, x, dead, **kw)

    _fails(checks.check_resample, calls_reference, match="scores zero")

    good = _resampler()

    @_mine
    def touches_all(sae, x, dead, **kw):
        n = good(sae, x, dead, **kw)
        with torch.no_grad():
            sae.b_enc[~dead] += 1.0
        return n

    _fails(checks.check_resample, touches_all, match="\\*alive\\* latents changed")


# ---- exercise 4 ------------------------------------------------------------------------------------
def _auxk(*, relu=False, dead_only=True, detach=True, mean_over_d=False):
    @_mine
    def auxk_loss(residual, pre_acts, W_dec, dead, k_aux):
        n_dead = int(dead.sum())
        if n_dead == 0:
            return pre_acts.new_zeros(())
        z = pre_acts.relu() if relu else pre_acts
        if dead_only:
            z = z.masked_fill(~dead, -torch.inf)
        top = z.topk(min(k_aux, n_dead), dim=-1)
        e_hat = torch.zeros_like(z).scatter(-1, top.indices, top.values) @ W_dec
        r = residual.detach() if detach else residual
        err = (r - e_hat).pow(2)
        return err.mean(-1).mean() if mean_over_d else err.sum(-1).mean()

    return auxk_loss


def test_auxk_accepts_a_correct_answer(capsys):
    checks.check_auxk_loss(_auxk())
    assert "matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, match", [
    (dict(relu=True), "you applied a ReLU"),
    (dict(dead_only=False), "over \\*all\\* latents"),
    (dict(detach=False), "detach it"),
    (dict(mean_over_d=True), "averaged the squared error over d_in"),
])
def test_auxk_names_the_mistake(kwargs, match):
    _fails(checks.check_auxk_loss, _auxk(**kwargs), match=match)


def test_auxk_rejects_the_reference():
    @_mine
    def auxk_loss(residual, pre_acts, W_dec, dead, k_aux):
        return losses.auxk_loss(residual, pre_acts, W_dec, dead, k_aux)

    _fails(checks.check_auxk_loss, auxk_loss, match="scores zero")
