"""The paper's numbers that reslab prints beside its own (He et al. 2016), in one place."""

# Table 6: parameters of the CIFAR-10 nets, by depth (as printed: "0.27M" ...).
TABLE6_PARAMS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}
# Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: best of 5 runs; mean 6.61±0.16).
TABLE6_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Table 1: "FLOPs" (multiply-adds) of the ImageNet nets at 224x224, by depth.
TABLE1_MACS = {18: "1.8G", 34: "3.6G", 50: "3.8G", 101: "7.6G", 152: "11.3G"}
# Table 2: ImageNet validation top-1 error (%), 10-crop testing. A different task and data set from ours.
TABLE2_TOP1 = {"plain18": 27.94, "plain34": 28.54, "resnet18": 27.88, "resnet34": 25.03}
