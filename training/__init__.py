"""fer-train: the teacher-student multitask training method of Deng, Chen and Shi (2020)."""
