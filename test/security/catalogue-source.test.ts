import { describe, expect, it } from 'vitest';
import { ExpectedError } from '../../src/core/errors.js';
import { parseCatalogue } from '../../src/admin/catalogue.js';

describe('a catalogue source with a password', () => {
  it('is refused at import, naming the line and field but never the password', () => {
    const text = 'run,dataset,quality,source\n2091,SiR2,gold,sftp://shifter@archive/midas/run02091.mid\n2092,SiR2,gold,sftp://shifter:s3cret-pw@archive/midas/run02092.mid\n';
    let error: unknown;
    try {
      parseCatalogue(text, 'runs.csv');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ExpectedError);
    expect((error as ExpectedError).exitCode).toBe(65);
    expect((error as ExpectedError).message).toMatch(/runs\.csv line 3, field source: a password in the URL is refused.*\.netrc/);
    expect((error as ExpectedError).message).not.toMatch(/s3cret-pw/);
  });

  it('a source with a user and no password is accepted', () => {
    expect(parseCatalogue('run,dataset,quality,source\n2091,SiR2,gold,sftp://shifter@archive/x.mid\n', 'runs.csv')[0]!.source).toBe('sftp://shifter@archive/x.mid');
  });
});
