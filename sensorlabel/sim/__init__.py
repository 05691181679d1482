"""Synthetic drives with exact ground truth: a curved road, structures, moving objects, a spinning lidar with
real motion distortion and distorted cameras. Tests, benchmarks and the demo run on these.

    from sensorlabel.sim import SimConfig, simulate, write_sim_drive
    sim = simulate(SimConfig(seed=0, num_frames=100))
    sweep = sim.sweep(0); boxes = sim.truth_boxes_ego(0)
    drive = write_sim_drive(sim, "out/sim.drive", with_labels="truth")
"""

from sensorlabel.sim.config import CAMERA_LAYOUT, SimConfig
from sensorlabel.sim.simdrive import LIDAR_NAME, SimDrive, simulate
from sensorlabel.sim.world import CLASS_COLOR_RGB, CLASSES
from sensorlabel.sim.writer import write_sim_drive

__all__ = ["CAMERA_LAYOUT", "CLASSES", "CLASS_COLOR_RGB", "LIDAR_NAME", "SimConfig", "SimDrive", "simulate",
           "write_sim_drive"]
