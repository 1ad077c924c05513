import torch

from cifar_resnet.config import PRESETS, STYLES, ModelConfig
from cifar_resnet.model import LAYOUTS, BasicBlock, PooledConv, build_model, whiten_stem


def test_stage_outputs_have_the_configured_shapes():
    config = PRESETS["four-stage"].model
    model = build_model(config).eval()
    x = torch.randn(2, 3, 32, 32)
    x = model.stem(x)
    assert x.shape == (2, config.channels[0], 32, 32)
    for stage, channels, size in zip(model.stages, config.channels, config.feature_sizes):
        x = stage(x)
        assert x.shape == (2, channels, size, size)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_shortcut_is_identity_only_when_the_shape_is_unchanged():
    assert isinstance(BasicBlock(16, 16).shortcut, torch.nn.Identity)
    projection = BasicBlock(16, 32, kernel=5, skip_kernel=3, stride=2)
    conv = projection.shortcut[0]
    assert (conv.kernel_size, conv.stride, conv.bias) == ((3, 3), (2, 2), None)
    assert projection.conv1.kernel_size == (5, 5)
    assert projection(torch.randn(1, 16, 9, 9)).shape == (1, 32, 5, 5)


def test_maxpool_downsampling_convolves_at_full_size_then_pools():
    block = BasicBlock(16, 32, maxpool=True).eval()
    assert block.conv1.stride == (1, 1) and block.shortcut[0].stride == (1, 1)
    x = torch.randn(2, 16, 9, 9)
    assert block(x).shape == (2, 32, 5, 5)
    pooled = torch.nn.functional.max_pool2d(block.conv1(x), 2, ceil_mode=True)
    branch = block.bn2(block.conv2(block.act(block.bn1(pooled))))
    shortcut = block.shortcut(torch.nn.functional.max_pool2d(x, 2, ceil_mode=True))
    torch.testing.assert_close(block(x), torch.relu(branch + shortcut))
    config = ModelConfig(blocks=(2, 1, 1), channels=(8, 16, 32), pool=8, downsample="maxpool")
    model = build_model(config)
    assert isinstance(model.stages[0][0].pool, torch.nn.Identity)  # stage 1 keeps 32x32
    assert [stage[0].conv1.stride for stage in model.stages] == [(1, 1)] * 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_airbench_style_opens_each_stage_with_a_pooled_conv_then_identity_basic_blocks():
    config = ModelConfig(blocks=(1, 2, 1), channels=(32, 64, 48), pool=3, downsample="maxpool", style="airbench")
    model = build_model(config).eval()
    x = model.stem(torch.randn(2, 3, 32, 32))
    assert x.shape == (2, 24, 31, 31) and model.stem[0].bias is not None
    for stage, blocks, channels, size in zip(model.stages, config.blocks, config.channels, config.feature_sizes):
        assert isinstance(stage[0], PooledConv) and len(stage) == 1 + blocks
        assert all(isinstance(block.shortcut, torch.nn.Identity) for block in stage[1:])
        x = stage(x)
        assert x.shape == (2, channels, size, size)
    assert config.feature_sizes == (15, 7, 3) and model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    opening, block = model.stages[0]
    y = torch.randn(2, 24, 9, 9)
    pooled = torch.nn.functional.max_pool2d(opening.conv(y), 2)  # rounds down: 9 -> 4
    torch.testing.assert_close(opening(y), torch.nn.functional.gelu(opening.norm(pooled)))
    z = opening(y)
    branch = block.bn2(block.conv2(torch.nn.functional.gelu(block.bn1(block.conv1(z)))))
    torch.testing.assert_close(block(z), torch.nn.functional.gelu(branch + z))
    assert not block.bn1.weight.requires_grad and block.bn1.eps == 1e-12 and block.bn1.momentum == 0.4
    identity = torch.nn.init.dirac_(torch.empty(32, 32, 3, 3))
    assert torch.equal(block.conv1.weight, identity)  # a square conv starts as the identity
    assert torch.equal(opening.conv.weight[:24], identity[:24, :24])  # a widening one passes its inputs on...
    assert opening.conv.weight[24:].abs().sum() > 0  # ...and its extra filters start random
    assert model.fc.bias is None
    features = model.flatten(model.pool(model.stages(model.stem(torch.randn(2, 3, 32, 32)))))
    assert features.shape == (2, 48)  # a global max pool of the last 3x3 map


def test_airbench_logits_are_the_classifier_output_over_nine():
    model = build_model(ModelConfig(blocks=(1,), channels=(24,), pool=15, downsample="maxpool", style="airbench"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x) * 9, model.fc(model.flatten(model.pool(model.stages(model.stem(x))))))


def test_pool_larger_than_one_widens_the_classifier():
    config = ModelConfig(blocks=(1, 1), channels=(8, 16), pool=4)  # 16x16 map -> 4x4 after pooling
    model = build_model(config)
    assert model.fc.in_features == 16 * 4 * 4
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_no_convolution_has_a_bias_and_the_build_is_seeded():
    model = build_model(PRESETS["tiny"].model)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    torch.manual_seed(1)
    a = build_model(PRESETS["tiny"].model).state_dict()
    torch.manual_seed(1)
    b = build_model(PRESETS["tiny"].model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_whiten_stem_fills_the_airbench_patch_stem_and_keeps_its_bias_trainable():
    images = torch.randn(300, 3, 32, 32)
    model = build_model(ModelConfig(blocks=(1,), channels=(24,), pool=15, downsample="maxpool", style="airbench"))
    whiten_stem(model, images)
    stem = model.stem[0]
    assert not stem.weight.requires_grad and stem.bias.requires_grad
    patches = torch.nn.functional.unfold(images, 2).transpose(1, 2).reshape(-1, 12)
    whitened = patches @ stem.weight[:12].flatten(1).T
    torch.testing.assert_close(whitened.T @ whitened / len(whitened), torch.eye(12), atol=0.01, rtol=0)
    torch.testing.assert_close(stem.weight[:12], -stem.weight[12:])


def test_whiten_stem_reads_the_images_in_chunks_without_changing_the_filters():
    images = torch.randn(1200, 3, 32, 32) * torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1)
    images[1000:] *= 3  # the last chunk differs: leaving any chunk out would change the filters
    model = build_model(ModelConfig(blocks=(1,), channels=(16,), pool=8))
    whiten_stem(model, images)
    patches = torch.nn.functional.unfold(images, 3).transpose(1, 2).reshape(-1, 27)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    first = eigenvectors[:, -1] / torch.sqrt(eigenvalues[-1] + 5e-4)  # the leading whitening filter
    sign = torch.sign(model.stem[0].weight[0].flatten() @ first)
    torch.testing.assert_close(sign * model.stem[0].weight[0].flatten(), first, rtol=0.02, atol=1e-3)


def test_every_style_has_one_builder_and_blocks_take_their_parts():
    assert tuple(LAYOUTS) == STYLES
    block = BasicBlock(8, 16, norm_layer=lambda c: torch.nn.GroupNorm(4, c), activation=torch.nn.SiLU)
    assert isinstance(block.bn1, torch.nn.GroupNorm) and isinstance(block.shortcut[1], torch.nn.GroupNorm)
    assert isinstance(block.act, torch.nn.SiLU) and block(torch.randn(2, 8, 6, 6)).shape == (2, 16, 6, 6)


def test_residual_variants_differ_only_where_they_say_and_gradients_reach_every_part(smoke_data):
    from cifar_resnet.data import Normalization
    from cifar_resnet.gradients import gradient_norms, residual_variants

    block = BasicBlock(8, 8).eval()
    block.residual = False
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(block.bn2(block.conv2(block.act(block.bn1(block.conv1(x)))))))
    built, unit_norm, plain = residual_variants(PRESETS["tiny"].model).values()
    assert torch.equal(built.stem[0].weight, plain.stem[0].weight)
    assert all(b.residual for b in built.modules() if isinstance(b, BasicBlock))
    assert not any(b.residual for b in plain.modules() if isinstance(b, BasicBlock))
    assert built.stages[0][0].bn2.weight.sum() == 0 and unit_norm.stages[0][0].bn2.weight.sum() == 16
    norms = gradient_norms(unit_norm, smoke_data.train_images[:16], smoke_data.train_labels[:16],
                           Normalization.from_images(smoke_data.train_images))
    assert list(norms) == ["stem", "stage 1", "stage 2", "stage 3", "head"] and all(v > 0 for v in norms.values())
