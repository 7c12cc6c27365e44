import { execFile } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/**
 * These machines have the docker client but no engine, so the deployment files
 * are checked as files: compose.yml parsed as YAML, the Dockerfile's
 * instructions read, the init script syntax-checked by bash.
 */

const DOCKER_DIR = fileURLToPath(new URL('../../docker/', import.meta.url));
const ROOT = resolve(DOCKER_DIR, '..');

interface Healthcheck {
  test: string[] | string;
  interval?: string;
  retries?: number;
}
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string | string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: Healthcheck;
  depends_on?: Record<string, { condition: string }>;
  command?: string[];
}
interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}

const compose = async (): Promise<Compose> => parse(await readFile(join(DOCKER_DIR, 'compose.yml'), 'utf8')) as Compose;

/** Dockerfile instructions of the last stage (the image that runs), with line continuations joined. */
async function finalStage(): Promise<{ keyword: string; args: string }[]> {
  const text = (await readFile(join(DOCKER_DIR, 'Dockerfile'), 'utf8')).replace(/\\\n/g, ' ');
  const instructions = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [keyword, ...rest] = l.split(/\s+/);
      return { keyword: keyword!.toUpperCase(), args: rest.join(' ') };
    });
  const lastFrom = instructions.map((i) => i.keyword).lastIndexOf('FROM');
  return instructions.slice(lastFrom);
}

/** Named volume mounted at `target` (short syntax NAME:TARGET[:MODE]). */
function mountOf(service: Service, target: string): string | undefined {
  return service.volumes?.map((v) => v.split(':')).find((parts) => parts[1] === target)?.[0];
}

const healthTest = (service: Service) => [service.healthcheck?.test ?? []].flat().join(' ');

describe('docker/compose.yml', () => {
  it('runs PostgreSQL 17 with a named data volume, a healthcheck and the role init scripts', async () => {
    const { services, volumes } = await compose();
    const postgres = services.postgres!;
    expect(postgres.image).toMatch(/^postgres:17(\b|$)/);
    const data = mountOf(postgres, '/var/lib/postgresql/data');
    expect(data).toBeDefined();
    expect(Object.keys(volumes)).toContain(data);
    expect(healthTest(postgres)).toMatch(/pg_isready/);
    expect(postgres.healthcheck?.retries).toBeGreaterThan(0);
    const init = mountOf(postgres, '/docker-entrypoint-initdb.d');
    expect(init).toBe('./initdb');
    const scripts = (await readdir(resolve(DOCKER_DIR, init!))).filter((f) => /\.(sh|sql)$/.test(f));
    expect(scripts.length).toBeGreaterThan(0);
    expect(Object.keys(postgres.environment ?? {})).toEqual(expect.arrayContaining(['POSTGRES_PASSWORD', 'SHIFTERS']));
  });

  it('offers an SFTP archive on a named volume, with a healthcheck', async () => {
    const { services, volumes } = await compose();
    const sftp = services.sftp!;
    expect(sftp.image).toMatch(/sftp|openssh/);
    const archive = sftp.volumes?.map((v) => v.split(':')[0]!).find((name) => name in volumes);
    expect(archive).toBeDefined();
    expect(healthTest(sftp)).toMatch(/\/22|ssh/i);
  });

  it('builds the CLI from docker/Dockerfile, waits for a healthy database and keeps the image entry point', async () => {
    const { services } = await compose();
    const cli = services.cli!;
    expect(cli.build).toBeDefined();
    expect(resolve(DOCKER_DIR, cli.build!.context)).toBe(ROOT);
    expect(resolve(ROOT, cli.build!.dockerfile)).toBe(join(DOCKER_DIR, 'Dockerfile'));
    // An `entrypoint:` here would replace the CLI as the container's entry.
    expect(cli.entrypoint).toBeUndefined();
    expect(cli.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(cli.environment?.DATABASE_URL).toMatch(/@postgres:5432\/run_production/);
  });
});

describe('docker/Dockerfile', () => {
  it('builds on node:20 with npm ci and the TypeScript build, and its entry point is the CLI', async () => {
    const text = await readFile(join(DOCKER_DIR, 'Dockerfile'), 'utf8');
    const froms = [...text.matchAll(/^FROM\s+(\S+)/gim)].map((m) => m[1]!);
    expect(froms.length).toBeGreaterThan(0);
    for (const image of froms) expect(image).toMatch(/^node:20([.-]|$)/);
    expect(text).toMatch(/^RUN\s+npm ci\b/m);
    expect(text).toMatch(/^RUN\s+.*(npx tsc|npm run build)/m);

    const stage = await finalStage();
    const entrypoints = stage.filter((i) => i.keyword === 'ENTRYPOINT');
    expect(entrypoints.length).toBeGreaterThan(0);
    // Exec form (a JSON array), so signals (Ctrl-C: the rollback) reach the CLI and not a shell.
    const entry = JSON.parse(entrypoints.at(-1)!.args) as string[];
    expect(entry).toEqual(['run-production']);
    // That name is the package's CLI, linked onto PATH from the copied bin/.
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin['run-production']).toBe('bin/run-production');
    const link = stage.find((i) => i.keyword === 'RUN' && /ln -s \S*\/bin\/run-production \/usr\/local\/bin\/run-production/.test(i.args));
    expect(link).toBeDefined();
    const copied = stage.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    for (const dir of ['bin', 'sql', 'dist', 'node_modules']) expect(copied.some((c) => new RegExp(`\\b${dir}\\b`).test(c))).toBe(true);
    // PostgreSQL refuses to run as root and jobs should not either: the image runs as a normal user.
    expect(stage.find((i) => i.keyword === 'USER')?.args).not.toMatch(/^(root|0)$/);
  });
});

describe('docker/initdb', () => {
  it('shell scripts are valid bash and pass names and passwords to SQL as psql variables only', async () => {
    const dir = join(DOCKER_DIR, 'initdb');
    for (const name of (await readdir(dir)).filter((f) => f.endsWith('.sh'))) {
      const path = join(dir, name);
      await access(path);
      await promisify(execFile)('bash', ['-n', path]);
      const text = await readFile(path, 'utf8');
      // Shell values never spliced into SQL text: heredocs are quoted ('SQL'), values go in with -v.
      expect(text).not.toMatch(/<<\s*SQL\b/);
      expect(text).toMatch(/:"name"/);
      expect(text).toMatch(/:'pw'/);
    }
    expect(dirname(dir)).toBe(DOCKER_DIR.replace(/\/$/, ''));
  });
});
