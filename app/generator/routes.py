"""The load generator's live profile: read by running generators, changed by operators."""

from fastapi import APIRouter

from app.core.deps import RedisDep, SettingsDep, TenantDep
from app.core.responses import errors
from app.generator.config import GeneratorConfig, load_config, save_config

router = APIRouter(tags=["generator"], responses=errors(401, 403, 422, 503))


@router.get("/v1/generator/config", response_model=GeneratorConfig)
async def get_generator_config(
    settings: SettingsDep, redis: RedisDep, tenant: TenantDep
) -> GeneratorConfig:
    """The caller's generator profile; the seed-000 defaults until one is stored."""
    return await load_config(redis, settings.generator_config_prefix, tenant)


@router.put("/v1/generator/config", response_model=GeneratorConfig)
async def put_generator_config(
    config: GeneratorConfig, settings: SettingsDep, redis: RedisDep, tenant: TenantDep
) -> GeneratorConfig:
    """Replace the caller's generator profile; omitted fields take their defaults."""
    return await save_config(redis, settings.generator_config_prefix, tenant, config)
