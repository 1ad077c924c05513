import pytest
import torch

from cifar_resnet.augment import (RAND_AUGMENT_OPERATIONS, augment, cutout, rand_augment, random_brightness_contrast,
                                  random_crop, random_erasing, random_flip)


@pytest.fixture
def images():
    return torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_crop_cuts_a_shifted_window_of_the_zero_padded_image(images):
    out = random_crop(images, padding=4, generator=gen())
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(len(images)):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(images, padding=0), images)
    assert not torch.equal(out, images)


def test_reflect_crop_cuts_a_window_of_the_mirror_padded_image(images):
    out = random_crop(images, padding=2, generator=gen(), reflect=True)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    for i in range(len(images)):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    zero_padded = random_crop(images, padding=2, generator=gen())  # same draws, other border
    assert not torch.equal(out, zero_padded)


def test_crop_with_flip_equals_crop_then_flip(images):
    for padding in (0, 2, 4):  # one gather draws what crop, then flip, would draw
        g = gen(7)
        sequential = random_flip(random_crop(images, padding, g), generator=g)
        assert torch.equal(random_crop(images, padding, gen(7), flip=0.5), sequential)


def test_a_flip_mask_mirrors_exactly_the_images_it_marks(images):
    mask = torch.arange(len(images)) % 3 == 0
    expected = torch.where(mask.view(-1, 1, 1, 1), images.flip(3), images)
    assert torch.equal(random_flip(images, mask, gen()), expected)
    for padding in (0, 2):  # the crop draws the same shifts; the mask replaces the coin
        cropped = random_crop(images, padding, gen(3))
        assert torch.equal(random_crop(images, padding, gen(3), flip=mask),
                           torch.where(mask.view(-1, 1, 1, 1), cropped.flip(3), cropped))
    assert torch.equal(augment(images, crop_padding=0, flip=mask, erasing=0.0), expected)


def test_flip_mirrors_about_half_of_the_images(images):
    out = random_flip(images, generator=gen())
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
    assert torch.equal(random_flip(images, p=1.0), images.flip(3))


def test_erasing_fills_one_rectangle_with_the_fill_value(images):
    out = random_erasing(images, p=1.0, fill=(0, 0, 0), generator=gen())
    for o, i in zip(out, images):
        erased = (o == 0).all(0)
        rows, cols = torch.nonzero(erased, as_tuple=True)
        assert len(rows) > 0
        box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()  # one solid rectangle
        assert 0.02 * 1024 * 0.5 <= len(rows) <= 0.33 * 1024 * 1.5
        assert torch.equal(o[:, ~erased], i[:, ~erased])
    assert torch.equal(random_erasing(images, p=0.0), images)


def test_cutout_blanks_at_most_a_size_by_size_square(images):
    out = cutout(images, size=8, fill=0, generator=gen())
    blanked = (out == 0).all(1).sum(dim=(1, 2))
    assert (blanked <= 64).all() and (blanked >= 16).all()


def test_augmentations_are_reproducible_and_device_agnostic(images):
    a = augment(images, generator=gen(3))
    b = augment(images, generator=gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(images, generator=gen(4)))


def test_brightness_contrast_shifts_and_scales_each_image_about_the_mean_pixel_within_its_strength():
    flat = torch.full((200, 3, 4, 4), 100, dtype=torch.uint8)
    flat[:, :, :2] = 140  # two levels per image: their gap is scaled by the contrast factor alone
    out = random_brightness_contrast(flat, strength=0.1, mean=120.0, std=64.0, generator=gen(0)).float()
    scale = (out[:, 0, 0, 0] - out[:, 0, 3, 0]) / 40
    assert scale.min() >= 0.9 - 0.03 and scale.max() <= 1.1 + 0.03 and scale.std() > 0.03  # each its own draw
    assert torch.equal(out, out[:, :1].expand_as(out))  # one draw per image, the same for every channel
    middle = (out[:, 0, 0, 0] + out[:, 0, 3, 0]) / 2  # 120 + shift * scale: the shift is within 0.1 * 64
    assert (middle - 120).abs().max() <= 0.1 * 64 * 1.1 + 1 and (middle - 120).std() > 1
    assert torch.equal(random_brightness_contrast(flat, strength=0.0, generator=gen(0)), flat)


def test_augment_changes_brightness_and_contrast_only_when_asked(images):
    plain = augment(images, erasing=0.0, generator=gen(5))
    assert torch.equal(plain, augment(images, erasing=0.0, brightness_contrast=0.0, generator=gen(5)))
    assert not torch.equal(plain, augment(images, erasing=0.0, brightness_contrast=0.135, generator=gen(5)))


def test_rand_augment_draws_its_own_operations_for_each_image(images):
    out = rand_augment(images, generator=gen())
    assert out.shape == images.shape and out.dtype == torch.uint8
    changed = [not torch.equal(o, i) for o, i in zip(out, images)]
    assert sum(changed) > 0.8 * len(images)  # only identity twice (1 in 196) leaves an image as it was
    assert torch.equal(out, rand_augment(images, generator=gen()))
    assert not torch.equal(out, rand_augment(images, generator=gen(1)))
    assert augment(images[:8], randaugment=True, generator=gen()).shape == (8, 3, 32, 32)


def test_rand_augment_uses_torchvisions_operations_and_magnitudes(images):
    """A batch where every image draws the same operation equals torchvision's result for it."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from cifar_resnet.augment import _rand_augment_ops

    ops = _rand_augment_ops(magnitude=9, num_bins=31, size=32)
    assert len(ops) == len(RAND_AUGMENT_OPERATIONS) == 14  # each named in the notebook's gallery
    assert RAND_AUGMENT_OPERATIONS.index("rotate") == 4 and RAND_AUGMENT_OPERATIONS.index("sharpness") == 8
    rotate, rotate_by, signed = ops[4]
    assert signed and rotate_by == pytest.approx(9.0)  # linspace(0, 30, 31)[9]
    assert torch.equal(rotate(images, -rotate_by), TF.rotate(images, -9.0, interpolation=InterpolationMode.NEAREST))
    for translate, pixels, _ in ops[2:4]:  # shifted by slicing: equal to torchvision's affine
        for sign in (1, -1):
            shift = [int(sign * pixels), 0] if translate is ops[2][0] else [0, int(sign * pixels)]
            assert torch.equal(translate(images, sign * pixels),
                               TF.affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                                         interpolation=InterpolationMode.NEAREST))
    sharpness, factor, _ = ops[8]
    for sign in (1, -1):
        assert torch.equal(sharpness(images, sign * factor), TF.adjust_sharpness(images, 1 + sign * factor))
    posterize, bits, _ = ops[9]
    assert bits == 7 and torch.equal(posterize(images, bits), TF.posterize(images, 7))
    solarize, threshold, _ = ops[10]
    assert threshold == pytest.approx(255 * (1 - 9 / 30))
