"""Regenerates the number-location tables from libphonenumber's data.

    pip download --no-deps phonenumbers==9.0.43 && unzip phonenumbers-*.whl -d pn
    python3 gen_number_location.py pn

Writes number_location_cn.tsv (prefix without 86, count of consecutive
prefixes of the same length with the same place, index into
number_location_cn_names.txt) and number_carrier_cn.tsv (prefix, carrier).
"""
import sys

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
from phonenumbers.carrierdata import CARRIER_DATA  # noqa: E402
from phonenumbers.geodata import GEOCODE_DATA  # noqa: E402

geo = {k[2:]: v["zh"] for k, v in GEOCODE_DATA.items() if k.startswith("86") and "zh" in v}
carriers = {k[2:]: v.get("zh") for k, v in CARRIER_DATA.items() if k.startswith("86") and v.get("zh")}
names = sorted(set(geo.values()))
index = {n: i for i, n in enumerate(names)}

runs = []
by_len = {}
for prefix, place in geo.items():
    by_len.setdefault(len(prefix), []).append((int(prefix), place))
for length, items in sorted(by_len.items()):
    items.sort()
    run = None
    for n, place in items:
        if run and n == run[1] + run[2] and place == run[3]:
            run[2] += 1
        else:
            if run:
                runs.append(run)
            run = [length, n, 1, place]
    runs.append(run)

with open("number_location_cn.tsv", "w") as f:
    f.write("# China (+86) number locations: prefix (without 86), count of consecutive prefixes, location index\n")
    for length, start, count, place in runs:
        f.write(f"{str(start).zfill(length)}\t{count}\t{index[place]}\n")
with open("number_location_cn_names.txt", "w") as f:
    for n in names:
        f.write(n + "\n")
with open("number_carrier_cn.tsv", "w") as f:
    f.write("# China (+86) mobile carriers by number prefix (without 86), longest prefix wins\n")
    for k, v in sorted(carriers.items()):
        f.write(f"{k}\t{v}\n")
