"""The small model the tests feed through the original tool's API (the seed document's
`YourPyTorchModel`, which it never defines): a conv layer and two Linear layers on 1x4x4 inputs."""
import torch
import torch.nn as nn


class YourPyTorchModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.conv1(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))
