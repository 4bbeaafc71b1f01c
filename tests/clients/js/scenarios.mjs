// The scenarios, each a function of the client returning {step: query}. Queries are lazy
// (they run when awaited), so the steps of one scenario run in the order written. The
// expectations live in tests/clients/test_postgrest_js.py. Reads come first; the writes only
// touch rows of their own (notes, and the messages of channels 3 and 4).
export const scenarios = {
  // ---- reads ------------------------------------------------------------------------------
  filters_basic: (db) => ({
    eq: db.from('users').select('username').eq('status', 'ONLINE').order('id'),
    neq: db.from('users').select('username').neq('username', 'alice').order('id'),
    gt: db.from('users').select('username').gt('age', 25).order('id'),
    in: db.from('users').select('username').in('username', ['bob', 'dave']).order('id'),
    is_null: db.from('users').select('username').is('age', null),
    not_is_null: db.from('users').select('username').not('age', 'is', null).order('id'),
  }),
  filters_like: (db) => ({
    like: db.from('users').select('username').like('bio', '%cat%').order('id'),
    ilike: db.from('users').select('username').ilike('username', '%A%').order('id'),
    like_percent_literal: db.from('users').select('username').like('bio', '100%'),
  }),
  filters_like_any_all: (db) => ({
    like_any: db.from('users').select('username').likeAnyOf('bio', ['%cats%', '%hiking%']).order('id'),
    like_all: db.from('users').select('username').likeAllOf('bio', ['%cat%', '%dog%']).order('id'),
    ilike_any: db.from('users').select('username').ilikeAnyOf('username', ['A%', 'B%']).order('id'),
  }),
  filters_match_object: (db) => ({
    match: db.from('users').select('username').match({ status: 'ONLINE', age: 30 }),
  }),
  filters_regex: (db) => ({
    match: db.from('users').select('username').regexMatch('username', '^[ab]').order('id'),
    imatch: db.from('users').select('username').regexIMatch('username', '^[AB]').order('id'),
  }),
  filters_logic: (db) => ({
    or: db.from('users').select('username').or('age.lt.20,username.eq.eve').order('id'),
    not: db.from('users').select('username').not('status', 'eq', 'ONLINE').order('id'),
    or_and: db.from('users').select('username')
      .or('and(status.eq.ONLINE,age.gt.35),username.eq.bob').order('id'),
    not_in: db.from('users').select('username').not('username', 'in', '(alice,bob,carol)').order('id'),
  }),
  filters_arrays: (db) => ({
    cs: db.from('kitchen').select('id').contains('tags', ['a']).order('id'),
    cd: db.from('kitchen').select('id').containedBy('tags', ['a', 'b', 'c']).order('id'),
    ov: db.from('kitchen').select('id').overlaps('tags', ['c', 'z']).order('id'),
    cs_int: db.from('kitchen').select('id').contains('nums', [2, 3]).order('id'),
  }),
  filters_ranges: (db) => ({
    cs: db.from('kitchen').select('id').contains('span', '[2,3]').order('id'),
    ov: db.from('kitchen').select('id').overlaps('span', '[15,30)').order('id'),
    sl: db.from('kitchen').select('id').rangeLt('span', '[6,8]').order('id'),
    adj: db.from('kitchen').select('id').rangeAdjacent('span', '[5,10)').order('id'),
  }),
  filters_fts: (db) => ({
    fts: db.from('users').select('username').textSearch('catchphrase', "'fat' & 'cat'", { config: 'english' }),
    plain: db.from('users').select('username')
      .textSearch('catchphrase', 'cat', { type: 'plain', config: 'english' }).order('id'),
    websearch: db.from('users').select('username')
      .textSearch('catchphrase', 'cat -dog', { type: 'websearch', config: 'english' }),
    phrase: db.from('users').select('username')
      .textSearch('catchphrase', 'hello world', { type: 'phrase' }),
  }),
  order_limit_range: (db) => ({
    desc_nulls_last: db.from('users').select('username')
      .order('age', { ascending: false, nullsFirst: false }).limit(2),
    asc_nulls_first: db.from('users').select('username')
      .order('age', { ascending: true, nullsFirst: true }).limit(2),
    range: db.from('users').select('username').order('id').range(1, 2),
    embedded: db.from('channels').select('slug, messages(id)').eq('id', 1)
      .order('id', { referencedTable: 'messages', ascending: false })
      .limit(1, { referencedTable: 'messages' }),
  }),
  single_maybe_single: (db) => ({
    single: db.from('users').select('username').eq('id', 1).single(),
    single_many: db.from('users').select('username').single(),
    single_none: db.from('users').select('username').eq('id', -1).single(),
    maybe_none: db.from('users').select('username').eq('id', -1).maybeSingle(),
    maybe_one: db.from('users').select('username').eq('id', 2).maybeSingle(),
    maybe_many: db.from('users').select('username').maybeSingle(),
  }),
  count_exact: (db) => ({
    head: db.from('users').select('*', { count: 'exact', head: true }).eq('status', 'ONLINE'),
    get_range: db.from('users').select('id', { count: 'exact' }).order('id').range(0, 1),
  }),
  embed_many_to_one: (db) => ({
    hints: db.from('messages')
      .select('id, channel:channels(slug), author:users!author_id(username), reviewer:users!messages_reviewer_id_fkey(username)')
      .in('id', [1, 2]).order('id'),
    ambiguous: db.from('messages').select('id, users(username)').eq('id', 1),
  }),
  embed_one_to_many: (db) => ({
    plain: db.from('channels').select('slug, messages(id)').in('id', [1, 5]).order('id')
      .order('id', { referencedTable: 'messages' }),
    filtered: db.from('channels').select('slug, messages(id)').in('id', [1, 5]).order('id')
      .eq('messages.author_id', 2),
    inner: db.from('channels').select('slug, messages!inner(id)').eq('messages.author_id', 2)
      .order('id'),
    owner: db.from('users').select('username, channels!owner_id(slug)').eq('id', 1)
      .order('id', { referencedTable: 'channels' }),
  }),
  csv: (db) => ({
    csv: db.from('users').select('id,username,bio').order('id').limit(2).csv(),
  }),
  error_unknown_column: (db) => ({
    select: db.from('users').select('nope'),
    filter: db.from('users').select('id').eq('nope', 1),
  }),
  error_bad_operator: (db) => ({
    filter: db.from('users').select('id').filter('age', 'eqq', '1'),
  }),
  typed_values: (db) => ({
    row: db.from('kitchen').select('id, doc, tags, nums, feeling, at, day, amount, flag').eq('id', 1).single(),
  }),
  rpc_db_function: (db) => ({
    scalar: db.rpc('get_status', { name_param: 'alice' }),
    set_filtered: db.rpc('users_older_than', { min_age: 20 }).select('username').gt('age', 29).order('age'),
    get: db.rpc('get_status', { name_param: 'bob' }, { get: true }),
    count_head: db.rpc('users_older_than', { min_age: 0 }, { count: 'exact', head: true }),
  }),
  rpc_python: (db) => ({
    post: db.rpc('greet', { name: 'ann', excited: true }),
    get: db.rpc('greet', { name: 'bo' }, { get: true }),
  }),

  // ---- issue 14 features, expected to fail until they land ---------------------------------
  select_casts: (db) => ({
    casts: db.from('users').select('id::text, age::text').eq('id', 1),
  }),
  select_json_paths: (db) => ({
    select: db.from('kitchen').select('id, color:doc->>color, doc->size->w').eq('id', 1),
    filter: db.from('kitchen').select('id').eq('doc->>color', 'blue'),
    order: db.from('kitchen').select('id').not('doc', 'is', null).order('doc->size->w', { ascending: false }),
  }),
  select_aggregates: (db) => ({
    count: db.from('messages').select('count()'),
    grouped: db.from('messages').select('channel_id, count()').order('channel_id'),
    embedded_count: db.from('channels').select('slug, messages(count)').eq('id', 1),
  }),
  select_spread: (db) => ({
    spread: db.from('messages').select('id, ...channels(slug)').eq('id', 1),
  }),
  embed_many_to_many: (db) => ({
    m2m: db.from('users').select('username, channels!channel_members(slug)').eq('id', 1),
  }),
  embed_self_reference: (db) => ({
    parent: db.from('categories').select('name, parent:categories!parent_id(name)').eq('id', 4),
  }),
  embed_view: (db) => ({
    view: db.from('online_users').select('username, channels!owner_id(slug)').eq('id', 3),
  }),
  schema_switch: (db) => ({
    other: db.schema('personal').from('diary').select('*'),
  }),
  count_planned: (db) => ({
    planned: db.from('users').select('*', { count: 'planned', head: true }),
  }),
  explain: (db) => ({
    plan: db.from('users').select('id').explain(),
  }),

  // ---- writes ------------------------------------------------------------------------------
  insert_select: (db) => ({
    one: db.from('notes').insert({ slug: 'js-insert', body: 'hello' }).select('slug, body, votes'),
    many_count: db.from('notes').insert([{ slug: 'js-many-1' }, { slug: 'js-many-2' }], { count: 'exact' }),
  }),
  update_select: (db) => ({
    one: db.from('notes').update({ body: 'new' }).eq('slug', 'seed-update').select('slug, body'),
    count: db.from('notes').update({ votes: 7 }, { count: 'exact' }).like('slug', 'seed-count-%'),
  }),
  delete_select: (db) => ({
    one: db.from('notes').delete().eq('slug', 'seed-delete').select('slug'),
    count: db.from('notes').delete({ count: 'exact' }).like('slug', 'seed-del-%'),
  }),
  single_safety_net: (db) => ({
    update_two: db.from('messages').update({ body: 'changed' }).eq('channel_id', 3).select().single(),
    delete_two: db.from('messages').delete().eq('channel_id', 4).select().single(),
    insert_two: db.from('notes').insert([{ slug: 'js-single-1' }, { slug: 'js-single-2' }]).select().single(),
    update_one: db.from('notes').update({ body: 'only me' }).eq('slug', 'seed-single').select('slug, body').single(),
  }),
  upsert: (db) => ({
    merge: db.from('notes').upsert({ slug: 'seed-upsert', body: 'merged' }, { onConflict: 'slug' }).select('slug, body'),
    insert: db.from('notes').upsert({ slug: 'js-upsert-new', body: 'fresh' }, { onConflict: 'slug' }).select('slug, body'),
    ignore: db.from('notes').upsert([{ slug: 'seed-upsert', body: 'ignored' }, { slug: 'js-upsert-ign', body: 'kept' }],
      { onConflict: 'slug', ignoreDuplicates: true }).select('slug, body'),
    count: db.from('notes').upsert([{ slug: 'seed-upsert', body: 'counted' }], { onConflict: 'slug', count: 'exact' }),
  }),
  rpc_volatile: (db) => ({
    post: db.rpc('add_vote', { note_slug: 'seed-vote' }),
    get: db.rpc('add_vote', { note_slug: 'seed-vote' }, { get: true }),
  }),
  values_write: (db) => ({
    insert: db.from('kitchen').insert({ id: 10, span: '[20,25)', blob: '\\x0a0b', tags: ['x', 'y'], feeling: 'ok' })
      .select('id, span, blob, tags, feeling'),
    read_bytea: db.from('kitchen').select('blob').eq('id', 1).single(),
  }),
}
