// Samples are the files as a 6.1 kernel prints them (cgroup v2, cpu/memory/pids/io enabled).
import { describe, expect, it } from 'vitest';
import { cgroupMetrics, parseFlatKeyed, parseIoStat, parseSingleValue } from './stats';

const CPU_STAT = `usage_usec 1859223
user_usec 1203781
system_usec 655442
nr_periods 1402
nr_throttled 377
throttled_usec 9817345
nr_bursts 0
burst_usec 0
`;

/** cpu.stat of a cgroup whose cpu controller is not enabled: only the first three keys. */
const CPU_STAT_NO_CONTROLLER = `usage_usec 5123
user_usec 4000
system_usec 1123
`;

const MEMORY_EVENTS = `low 0
high 12
max 340
oom 3
oom_kill 2
oom_group_kill 0
`;

const IO_STAT = `254:0 rbytes=4096000 wbytes=1052672 rios=250 wios=31 dbytes=0 dios=0
8:0 rbytes=8192 wbytes=0 rios=2 wios=0 dbytes=0 dios=0
`;

describe('cgroup v2 parsers', () => {
  it('parseFlatKeyed reads every "key value" line and ignores the rest', () => {
    expect(Object.fromEntries(parseFlatKeyed(CPU_STAT))).toEqual({
      usage_usec: 1859223,
      user_usec: 1203781,
      system_usec: 655442,
      nr_periods: 1402,
      nr_throttled: 377,
      throttled_usec: 9817345,
      nr_bursts: 0,
      burst_usec: 0,
    });
    expect(parseFlatKeyed(MEMORY_EVENTS).get('oom_kill')).toBe(2);
    expect(parseFlatKeyed('garbage\nkey notanumber\n\n').size).toBe(0);
  });

  it('parseSingleValue: a number, null for "max", undefined for anything else', () => {
    expect(parseSingleValue('52428800\n')).toBe(52428800);
    expect(parseSingleValue('max\n')).toBeNull();
    expect(parseSingleValue('')).toBeUndefined();
    expect(parseSingleValue('-1')).toBeUndefined();
  });

  it('parseIoStat sums every device', () => {
    expect(parseIoStat(IO_STAT)).toEqual({ rbytes: 4104192, wbytes: 1052672, rios: 252, wios: 31 });
    expect(parseIoStat('')).toEqual({ rbytes: 0, wbytes: 0, rios: 0, wios: 0 });
    // A device line with only some keys (e.g. no I/O of one kind yet) still counts what it has.
    expect(parseIoStat('8:16 rbytes=10 wbytes=zz rios=1\nnot a device line\n')).toEqual({ rbytes: 10, wbytes: 0, rios: 1, wios: 0 });
  });
});

describe('cgroupMetrics', () => {
  it('turns a full set of files into metrics', () => {
    expect(
      cgroupMetrics({
        'cpu.stat': CPU_STAT,
        'memory.current': '31457280\n',
        'memory.peak': '52428800\n',
        'memory.max': '67108864\n',
        'memory.events': MEMORY_EVENTS,
        'pids.current': '7\n',
        'pids.max': '100\n',
        'io.stat': IO_STAT,
      }),
    ).toEqual({
      cpuUsageUsec: 1859223,
      cpuUserUsec: 1203781,
      cpuSystemUsec: 655442,
      cpuNrPeriods: 1402,
      cpuNrThrottled: 377,
      cpuThrottledUsec: 9817345,
      memoryCurrentBytes: 31457280,
      memoryPeakBytes: 52428800,
      memoryMaxBytes: 67108864,
      memoryOom: 3,
      memoryOomKill: 2,
      pidsCurrent: 7,
      pidsMax: 100,
      ioReadBytes: 4104192,
      ioWriteBytes: 1052672,
      ioReadIos: 252,
      ioWriteIos: 31,
    });
  });

  it('leaves out what is missing: no controller, no memory.peak (before 5.19), "max" limits', () => {
    expect(cgroupMetrics({ 'cpu.stat': CPU_STAT_NO_CONTROLLER, 'memory.current': '4096\n', 'memory.max': 'max\n', 'pids.max': 'max\n' })).toEqual({
      cpuUsageUsec: 5123,
      cpuUserUsec: 4000,
      cpuSystemUsec: 1123,
      memoryCurrentBytes: 4096,
    });
    expect(cgroupMetrics({})).toEqual({});
  });
});
