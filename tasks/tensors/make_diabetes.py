#!/usr/bin/env python3
"""A real multi-task regression from scikit-learn's bundled diabetes data (no downloads).

scikit-learn's wheel ships Efron et al.'s diabetes study (sklearn/datasets/data/
diabetes_data_raw.csv.gz and diabetes_target.csv.gz: 442 patients, age, sex, BMI, blood
pressure and six blood serum measurements, and a measure of disease progression one year
later); `load_diabetes(scaled=False)` reads the raw values from there. This script makes one
task per sex (coded 1 and 2 in the data), as CSV files with a header:
OUT/diabetes-sex{1,2}.csv with columns age, bmi, bp, s1..s6 and `progression` (the target
divided by 100, so MSEs read in hundreds² of the original unit).

Usage: python3 tasks/tensors/make_diabetes.py [OUT_DIR]   (needs `pip install scikit-learn`)
"""
import csv
import pathlib
import sys

from sklearn.datasets import load_diabetes

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "diabetes")
out.mkdir(parents=True, exist_ok=True)
data = load_diabetes(scaled=False)
names = list(data.feature_names)  # age, sex, bmi, bp, s1..s6
sex = names.index("sex")
features = [n for n in names if n != "sex"]
for code in (1, 2):
    path = out / f"diabetes-sex{code}.csv"
    rows = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(features + ["progression"])
        for x, y in zip(data.data, data.target):
            if int(x[sex]) == code:
                w.writerow([repr(float(v)) for i, v in enumerate(x) if i != sex] + [repr(float(y) / 100)])
                rows += 1
    print(f"wrote {path}: {rows} patients")
