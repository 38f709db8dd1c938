"""Attacks: agreement with torchattacks, budgets, [0, 1], success flags, sigmoid heads, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cemap
from cemap.attacks import BIM, FGSM, PGD, AttackResult, CarliniWagnerL2, ConfidenceMatchedPGD, MinimalPGD, get_attack


@pytest.fixture(scope="module")
def digits(mnist_test):
    batch = mnist_test.batch(range(12))
    return batch.images, batch.labels


def test_fgsm_and_pgd_match_torchattacks(mnist_clf, digits):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits
    mnist_clf.eval()  # torchattacks restores train mode on a module it finds training
    ours = FGSM(mnist_clf, eps=0.2, loss="ce")(x, y).adversarial
    ref = torchattacks.FGSM(mnist_clf, eps=0.2)(x, y)
    assert torch.equal(ours, ref)
    ours = PGD(mnist_clf, eps=0.2, alpha=0.05, steps=4, random_start=False, loss="ce")(x, y).adversarial
    ref = torchattacks.PGD(mnist_clf, eps=0.2, alpha=0.05, steps=4, random_start=False)(x, y)
    assert torch.equal(ours, ref)
    assert not mnist_clf.training


@pytest.mark.parametrize(
    "make, norm, budget",
    [
        (lambda c: FGSM(c, eps=0.05), "linf", 0.05),
        (lambda c: BIM(c, eps=0.05, steps=4), "linf", 0.05),
        (lambda c: PGD(c, eps=0.05, steps=4, random_start=True), "linf", 0.05),
        (lambda c: PGD(c, eps=0.5, steps=4, norm="l2", random_start=True), "l2", 0.5),
        (lambda c: CarliniWagnerL2(c, steps=10, search_steps=2, lr=0.1, max_l2=0.4), "l2", 0.4),
    ],
)
def test_attacks_stay_in_budget_and_in_unit_range(tiny_clf, make, norm, budget):
    x = torch.rand(6, 3, 16, 16)
    res = make(tiny_clf)(x)
    assert isinstance(res, AttackResult) and res.adversarial.shape == x.shape
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    delta = (res.adversarial - x).flatten(1)
    norms = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (norms <= budget * (1 + 1e-5) + 1e-6).all()
    assert torch.allclose(res.linf, delta.abs().amax(1)) and torch.allclose(res.l2, delta.norm(dim=1))
    with torch.inference_mode():
        pred = tiny_clf(res.adversarial).argmax(1)
    assert torch.equal(res.success, pred != res.labels)


def test_pgd_fools_mnist_and_targeted_reaches_target(mnist_clf, digits):
    x, y = digits
    res = PGD(mnist_clf, eps=0.3, steps=5)(x, y)
    assert res.success_rate > 0.9
    tgt = PGD(mnist_clf, eps=0.3, steps=5, random_start=False)(x, target=3)
    with torch.inference_mode():
        pred = mnist_clf(tgt.adversarial).argmax(1)
    assert torch.equal(tgt.success, pred == 3) and tgt.success.float().mean() > 0.5
    cw = CarliniWagnerL2(mnist_clf, steps=30, search_steps=2, lr=0.1)(x[:4], y[:4])
    assert cw.success.float().mean() >= 0.5
    assert torch.equal(cw.adversarial[~cw.success], x[:4][~cw.success])  # failures return the clean image


def _linear_sigmoid(seed: int) -> tuple[nn.Module, cemap.Classifier]:
    """A seeded linear model over 3 x 8 x 8 images with five sigmoid findings."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    return net, cemap.Classifier(
        net, class_names=list("abcde"), head="sigmoid", input_shape=(3, 8, 8), layers=["1"], default_layer="1"
    )


def test_sigmoid_head_attacks_one_finding():
    net, clf = _linear_sigmoid(seed=0)
    x = torch.rand(8, 3, 8, 8)
    res = PGD(clf, eps=0.3, steps=10, random_start=False)(x, labels=2)
    with torch.inference_mode():
        before, after = clf(x)[:, 2] > 0, clf(res.adversarial)[:, 2] > 0
    assert torch.equal(res.success, before != after) and res.success.all()
    made_positive = FGSM(clf, eps=0.3)(x, target=4)
    with torch.inference_mode():
        assert torch.equal(made_positive.success, clf(made_positive.adversarial)[:, 4] > 0)
    with pytest.raises(cemap.CemapError):
        PGD(clf, eps=0.1)(x, labels=torch.zeros(8, 5))


def test_sigmoid_pgd_reads_the_clean_decision_off_its_first_step():
    net, clf = _linear_sigmoid(seed=1)
    forwards = []
    clf.model.register_forward_hook(lambda *_: forwards.append(1))  # the classifier runs its own frozen copy of net
    x = torch.rand(8, 3, 8, 8)
    res = PGD(clf, eps=0.3, alpha=0.05, steps=4, random_start=False, loss="ce")(x, labels=2)
    assert len(forwards) == 4  # the steps only: no forward of its own for the clean decision, none for success yet
    success = res.success
    assert len(forwards) == 4 + 1 and res.success is success  # judged once, on first access
    with torch.no_grad():
        decision = (net(x)[:, 2] > 0).float()
    adv = x.clone()
    for _ in range(4):  # a plain loop with the clean decision as the BCE label
        adv.requires_grad_(True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(adv)[:, 2], decision, reduction="none").sum()
        step = adv.detach() + 0.05 * torch.autograd.grad(loss, adv)[0].sign()
        adv = torch.clamp(x + torch.clamp(step - x, min=-0.3, max=0.3), min=0, max=1)
    assert torch.equal(res.adversarial, adv)
    forwards.clear()
    PGD(clf, eps=0.3, steps=4, random_start=True)(x, labels=2)
    assert len(forwards) == 4 + 1  # a random start needs the clean decision first


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_stable_loss_is_cross_entropy_with_a_gradient_that_never_vanishes(head):
    clf = cemap.Classifier(
        nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), class_names=list("abc"), head=head, input_shape=(1, 2, 2)
    )
    logits = torch.tensor([[2.0, -1.0, 0.5], [40.0, -10.0, 3.0], [-0.3, 0.2, 0.1]], requires_grad=True)
    labels, target = torch.tensor([0, 0, 1]), torch.tensor([2, 1, 0])
    original = (logits.detach().gather(1, labels[:, None]).squeeze(1) > 0).float()
    stable, torch_ce = PGD(clf, loss="stable"), PGD(clf, loss="ce")
    for goal in (None, target):
        assert torch.allclose(
            stable.objective(logits, labels, goal, original),
            torch_ce.objective(logits, labels, goal, original),
            atol=1e-6,
        )

    def grad(attack):
        return torch.autograd.grad(attack.objective(logits, labels, None, original).sum(), logits)[0]

    assert (
        torch.equal(grad(torch_ce)[1], torch.zeros(3)) if head == "sigmoid" else grad(torch_ce)[1].abs().max() < 1e-15
    )
    assert grad(stable)[1].abs().max() > 0  # 40 logits of confidence: still a direction to move in
    with pytest.raises(cemap.CemapError, match="unknown attack loss"):
        PGD(clf, loss="hinge")


def test_stable_loss_moves_a_sample_that_cross_entropy_strands():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))
    with (
        torch.no_grad()
    ):  # z = sum(x) - 66: 30 logits at x = 0.5 (p rounds to 1), within reach of eps = 0.2 (38 logits)
        net[1].weight.fill_(1.0), net[1].bias.fill_(-66.0)
    clf = cemap.Classifier(net, class_names=["finding"], head="sigmoid", input_shape=(3, 8, 8))
    x = 0.5 + 0.01 * torch.rand(4, 3, 8, 8)
    stranded = PGD(clf, eps=0.2, steps=10, random_start=False, loss="ce")(x, labels=0)
    moved = PGD(clf, eps=0.2, steps=10, random_start=False)(x, labels=0)
    assert torch.equal(stranded.adversarial, x) and not stranded.success.any()
    assert moved.success.all()


def test_bf16_precision_runs_and_errors_are_clear(tiny_clf):
    x = torch.rand(4, 3, 16, 16)
    assert PGD(tiny_clf, eps=0.05, steps=2, precision="bf16")(x).linf.max() <= 0.05 + 1e-6
    with pytest.raises(cemap.CemapError):
        PGD(tiny_clf, precision="fp8")
    with pytest.raises(cemap.CemapError, match="image shape"):
        FGSM(tiny_clf, eps=0.1)(torch.rand(4, 1, 16, 16))
    with pytest.raises(cemap.CemapError, match="outside"):
        FGSM(tiny_clf, eps=0.1)(x * 3)
    with pytest.raises(cemap.CemapError, match="unknown attack"):
        get_attack("deepfool", tiny_clf)
    with pytest.raises(cemap.CemapError):
        FGSM(tiny_clf, eps=0.1)(x, labels=torch.tensor([0, 1]))
    with pytest.raises(cemap.CemapError):
        PGD(tiny_clf, eps=-1)
    assert isinstance(get_attack("pgd", tiny_clf, eps=0.1, norm="l2"), PGD)


def test_images_and_labels_made_under_inference_mode_can_be_attacked(tiny_clf):
    """The natural recipe - predict under inference_mode, then attack those labels - must not hit autograd's
    inference-tensor error."""
    with torch.inference_mode():
        x = torch.rand(4, 3, 16, 16)
        labels = tiny_clf(x).argmax(1)
        target = labels.roll(1)
    for attack in (
        FGSM(tiny_clf, eps=0.1),
        PGD(tiny_clf, eps=0.1, steps=2, loss="ce"),
        CarliniWagnerL2(tiny_clf, steps=2, search_steps=1),
    ):
        for goal in (None, target):
            result = attack(x, labels=labels, target=goal)
            assert result.adversarial.shape == x.shape and torch.equal(result.labels, labels)


def test_success_is_judged_chunk_by_chunk_against_each_chunks_clean_decision():
    net, clf = _linear_sigmoid(seed=3)
    x = torch.rand(7, 3, 8, 8)
    whole = PGD(clf, eps=0.02, steps=3, random_start=True)(x, labels=1)
    chunked = PGD(clf, eps=0.02, steps=3, random_start=True, batch_size=3)(x, labels=1)
    with torch.no_grad():
        flipped = (net(chunked.adversarial)[:, 1] > 0) != (net(x)[:, 1] > 0)
    assert torch.equal(chunked.success, flipped) and torch.equal(whole.success, flipped)
    assert 0 < flipped.sum() < 7  # both outcomes occur, so a misaligned clean decision would show


def _bn_net() -> nn.Sequential:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4)
    )
    with torch.no_grad():  # statistics far from the identity, so a wrong fold shows
        net[2].running_mean.uniform_(0.5, 2.0)
        net[2].running_var.uniform_(0.1, 3.0)
        net[2].weight.uniform_(0.5, 1.5)
        net[2].bias.uniform_(-1, 1)
    return net.eval()


def test_scale_shift_batchnorm_copy_shares_parameters_and_leaves_the_original_alone():
    from cemap.models.folding import ScaleShift, with_scale_shift_batchnorm

    net = _bn_net()
    x = torch.rand(5, 3, 8, 8)
    copy = with_scale_shift_batchnorm(net)
    assert isinstance(copy[2], ScaleShift) and type(net[2]) is nn.BatchNorm2d
    assert copy[0].weight is net[0].weight and copy[5].weight is net[5].weight
    with torch.no_grad():
        assert torch.allclose(copy(x), net(x), atol=1e-5)
    net[2].train()
    assert type(with_scale_shift_batchnorm(net)[2]) is nn.BatchNorm2d  # batch statistics are not a fixed affine map


def test_reduced_precision_attacks_step_through_scale_shift_and_judge_with_the_model_itself():
    net = _bn_net()
    clf = cemap.Classifier(net, class_names=list("abcd"), input_shape=(3, 8, 8), layers=["2"], default_layer="2")
    native_calls = []
    clf.model[2].register_forward_hook(
        lambda *_: native_calls.append(1)
    )  # the classifier runs its own frozen copy of net
    x = torch.rand(6, 3, 8, 8)
    fp32 = PGD(clf, eps=0.05, steps=3, random_start=False)(x)
    assert len(native_calls) == 1 + 3  # labels, then every step through the model's own batch-norm
    native_calls.clear()
    bf16 = PGD(clf, eps=0.05, steps=3, random_start=False, precision="bf16")(x)
    assert len(native_calls) == 0  # labels and steps ran through the ScaleShift copy
    bf16.success
    assert len(native_calls) == 1  # success is the float32 model's verdict
    same_direction = ((bf16.adversarial - x).sign() == (fp32.adversarial - x).sign()).float().mean()
    assert same_direction > 0.9  # bf16 gradients through ScaleShift point where fp32's do


def test_minimal_pgd_stops_at_the_first_flip_and_pgd_goes_on():
    net, clf = _linear_sigmoid(seed=4)
    x = torch.rand(8, 3, 8, 8)
    with torch.inference_mode():
        clean = clf(x)[:, 2]
    minimal = MinimalPGD(clf, eps=0.3, steps=60)(x, labels=2)
    full = PGD(clf, eps=0.3, steps=60, random_start=False)(x, labels=2)
    assert minimal.success.all() and full.success.all()
    with torch.inference_mode():
        z_min, z_full = clf(minimal.adversarial)[:, 2], clf(full.adversarial)[:, 2]
    # just across the boundary: |z| smaller than one step's worth of logit change, and far smaller than PGD's
    assert (minimal.linf < full.linf).all() and (z_min.abs() < z_full.abs()).all()
    assert ((z_min > 0) != (clean > 0)).all()


def test_confidence_matched_pgd_mirrors_the_attacked_logit():
    net, clf = _linear_sigmoid(seed=5)
    x = torch.rand(8, 3, 8, 8)
    with torch.inference_mode():
        clean = clf(x)[:, 1]
    res = ConfidenceMatchedPGD(clf, eps=0.5, steps=80)(x, labels=1)
    with torch.inference_mode():
        adv = clf(res.adversarial)[:, 1]
    assert res.success.all()
    assert torch.allclose(
        adv, -clean, atol=0.1 * clean.abs().max().item()
    )  # z -> -z: the same confidence, the other side


def test_unbounded_cw_succeeds_on_every_digit_and_records_its_convergence(mnist_clf, mnist_test):
    """With enough steps and a binary search that raises c tenfold where it failed, unbounded C&W reaches ~100%
    (issue 29: 30 steps x 4 searches reached 70% on mnist5k); the record shows the search closing in."""
    from cemap.data.base import stack_images

    x = stack_images(mnist_test)[:8]
    attack = CarliniWagnerL2(mnist_clf, steps=100, search_steps=2)
    result = attack(x)
    assert result.success_rate >= 0.99
    first, last = attack.convergence
    assert last["success_rate"] == 1.0 and last["mean_margin_of_failures"] is None
    assert first["steps"] <= 100 and last["c_median"] != first["c_median"]  # the search moved c


def test_cw_stops_a_search_step_early_once_the_loss_stalls(mnist_clf, mnist_test):
    from cemap.data.base import stack_images

    x = stack_images(mnist_test)[:2]
    patient = CarliniWagnerL2(mnist_clf, steps=400, search_steps=1, lr=0.5, abort_early=False)
    eager = CarliniWagnerL2(mnist_clf, steps=400, search_steps=1, lr=0.5)
    patient(x), eager(x)
    assert patient.convergence[0]["steps"] == 400 and eager.convergence[0]["steps"] < 400
