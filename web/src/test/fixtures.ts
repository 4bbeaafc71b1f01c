// A PostgREST-style OpenAPI document for the demo shop, used by the unit tests.

const fk = (table: string, column: string) =>
  `Note:\nThis is a Foreign Key to \`${table}.${column}\`.<fk table='${table}' column='${column}'/>`
const pk = 'Note:\nThis is a Primary Key.<pk/>'

export const demoOpenApi = {
  openapi: '3.0.3',
  info: { title: 'Headwater', version: '0.1.0' },
  paths: {
    '/': { get: {} },
    '/customers': { get: {}, post: {}, patch: {}, delete: {} },
    '/orders': { get: {}, post: {}, patch: {}, delete: {} },
    '/customer_totals': { get: {} },
    '/rpc/ping': { post: {} },
  },
  components: {
    schemas: {
      customers: {
        type: 'object',
        required: ['id', 'name', 'email'],
        properties: {
          id: { type: 'integer', format: 'integer', description: pk, default: 'nextval' },
          name: { type: 'string', format: 'text', description: 'Full name' },
          email: { type: 'string', format: 'text', maxLength: 20 },
          vip: { type: 'boolean', format: 'boolean', default: false },
          born: { type: 'string', format: 'date', nullable: true },
          meta: { type: 'object', format: 'jsonb', nullable: true },
        },
      },
      orders: {
        type: 'object',
        required: ['customer_id', 'total'],
        properties: {
          id: { type: 'integer', format: 'int8', description: pk, default: 'nextval' },
          customer_id: { type: 'integer', format: 'int4', description: fk('customers', 'id') },
          total: { type: 'number', format: 'numeric' },
          status: { type: 'string', format: 'text', enum: ['new', 'paid', 'shipped'], default: 'new' },
          paid: { type: 'boolean', format: 'boolean', nullable: true },
          created_at: { type: 'string', format: 'timestamp', default: 'now()' },
          shipped_at: { type: 'string', format: 'timestamp with time zone', nullable: true },
          ref: { type: 'string', format: 'uuid', nullable: true },
        },
      },
      customer_totals: {
        type: 'object',
        properties: {
          customer_id: { type: 'integer', format: 'integer', nullable: true },
          total: { type: 'number', format: 'numeric', nullable: true },
        },
      },
    },
  },
}
